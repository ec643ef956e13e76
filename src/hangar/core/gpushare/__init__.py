"""GPU sharing (GPU Go): GPU agents on people's machines, workers bound to GPUs, share links."""
