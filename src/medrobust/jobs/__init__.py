"""The job machinery: locks, GPU slots, device checks, code digests, progress, provenance and
resumable state. Imports the core and no stage."""
