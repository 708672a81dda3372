"""The carebus command line: the client and the offline stack behind one command, `carebus`."""
