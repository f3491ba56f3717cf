"""What runs a model at scale: checkpoints, the training and pretraining runs, evaluation, inference, retrieval
galleries. The notebooks build the pieces (the lesson modules); this is what the commands call. Map: docs/layers.md."""
