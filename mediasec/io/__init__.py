"""The edge: files, keys, images, workers. Only this layer (and cli/net) touches the OS."""
