"""ktune.v1 protocol buffers and gRPC stubs, generated from proto/ktune/v1/*.proto at build time."""
