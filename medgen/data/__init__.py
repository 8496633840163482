"""Medical image data: reading/writing with geometry, modality presets, datasets and the data module."""
