"""The carebus client: talks to any carebus stack (offline, rehearsed, deployed) through its outputs, its
API and the AWS APIs. It never imports an emulator."""
