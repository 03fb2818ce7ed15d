"""The VAVL network in pure PyTorch (no Ray): padding-aware conformers and the two-branch model.

Shape notation used throughout this package:
    B  utterances in a batch
    T  frames, padded to the batch's longest (T_a audio, T_v visual)
    D  input features per frame (D_a audio, D_v visual)
    d  model width (`d_model`), the width of every conformer
    H  attention heads
    K  outputs of a prediction head (classes or attributes)
    P  rows of the batch where a modality is present (P <= B)

Padding convention: a boolean mask (B, T), True on REAL frames. A row whose mask is all False has
no such modality; it is never fed to attention (index_select picks present rows) and its outputs
are zeros with a `present` flag of False.
"""

from vavl.model.conformer import ConformerBlock, ConvModule, FeedForward, SelfAttention, zero_pads
from vavl.model.vavl import VAVL, ModalityEncoder, ModalityOutputs, VAVLOutput, masked_mean

__all__ = [
    "VAVL",
    "ConformerBlock",
    "ConvModule",
    "FeedForward",
    "ModalityEncoder",
    "ModalityOutputs",
    "SelfAttention",
    "VAVLOutput",
    "masked_mean",
    "zero_pads",
]
