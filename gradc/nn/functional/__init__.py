"""gradc.nn.functional (`import gradc.nn.functional as F`): stateless layer ops and losses."""
from .attention import multi_head_attention_forward, scaled_dot_product_attention
from .layers import *  # noqa: F403
from .loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
