"""Recognition: slots, perceptual keys, the two cache tiers, coalescing and TFLite inference."""
