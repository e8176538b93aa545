"""Model factory on timm backbones: creation, weights, freezing, fusion head."""
