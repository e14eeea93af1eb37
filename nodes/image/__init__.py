"""Image nodes: load, save and preview files, create, resize, blend, crop and batch IMAGE tensors."""
