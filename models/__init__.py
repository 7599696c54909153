"""Model definitions (ProGAN generator, segmenter, classifier), the scene world and the model zoo."""
