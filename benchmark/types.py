"""Shared type aliases."""

import torch

StateDict = dict[str, torch.Tensor]
