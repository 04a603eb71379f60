"""Stand-ins for SDKs that cannot run on the Linux CI machine (only SpoutGL so far)."""
