"""The end-to-end checks, written once against "a stack": its outputs, a Cognito sign-in, the public API
and the AWS APIs, through the client the CLI uses. They run against the offline stack (`make test`), the
rehearsal (`make rehearse`) and a deployed stack (`CAREBUS_STACK=carebus-dev make e2e`); see targets.py."""
