"""Training: MoCo pretraining, fine-tuning, the paper's experiments."""
