"""The offline demo world: the shapes benchmark, a zoo of tiny VLMs trained on it, and `demo build`."""
