"""The models layer: loading weights into :class:`ModelParts`, LoRA fusion, the tiny model, the on-disk store."""
