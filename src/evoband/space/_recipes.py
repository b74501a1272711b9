"""The recipes the initial population starts from (re-exported by :mod:`evoband.space._spaces`).

Plain genotype dicts of the extended (and course) space; :func:`evoband.space._spaces.recipes` picks
those that are valid configurations of a given space.
"""

from __future__ import annotations

from typing import Any

Config = dict[str, Any]

_RECIPE_BASE: Config = {
    "learning_rate_init": 3e-3,
    "batch_size": 64,
    "kernel_size": 3,
    "use_BN": True,
    "global_avg_pooling": True,
    "dropout_rate": 0.3,
    "n_conv_layers": 3,
    "convs_per_stage": 2,
    "n_channels_conv_0": 32,
    "n_channels_conv_1": 64,
    "n_channels_conv_2": 128,
    "n_fc_layers": 0,
    "optimizer": "adamw",
    "train_criterion": "cross_entropy",
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "lr_schedule": "onecycle",
    "activation": "relu",
    "aug_flip": True,
    "aug_shift": 2,
    "tta_flip": True,
    "towers": 1,
}

RECIPES: dict[str, Config] = {
    # A VGG-style CNN: two 3x3 convs + BN per stage, doubling widths, global pooling, AdamW with a
    # one-cycle schedule, label smoothing, flip + shift augmentation and flip test-time averaging,
    # dropout 0.3 on the pooled features (the usual small-image recipe; level with 0.1 on CV over
    # 5 seeds, slightly ahead in precision: benchmarks/README.md, recipe_variants.py).
    "bn-cnn": dict(_RECIPE_BASE),
    # Two of those side by side, each learning from its own loss, their logits averaged: an
    # ensemble of two in one network, for twice the parameters and training time.
    "bn-cnn-pair": {**_RECIPE_BASE, "towers": 2},
    # The same at a quarter of the parameters, without flips (for data that is not mirror-symmetric).
    "bn-cnn-small": {
        **_RECIPE_BASE,
        "n_channels_conv_0": 16,
        "n_channels_conv_1": 32,
        "n_channels_conv_2": 64,
        "dropout_rate": 0.1,
        "aug_flip": False,
        "aug_shift": 1,
        "tta_flip": False,
    },
    # One conv per stage, wider, with a hidden FC layer and SGD + momentum on a cosine schedule.
    "sgd-cosine": {
        **_RECIPE_BASE,
        "convs_per_stage": 1,
        "n_channels_conv_0": 64,
        "n_channels_conv_1": 128,
        "n_channels_conv_2": 256,
        "n_fc_layers": 1,
        "n_channels_fc_0": 128,
        "dropout_rate": 0.3,
        "optimizer": "sgd",
        "learning_rate_init": 0.05,
        "weight_decay": 5e-4,
        "lr_schedule": "cosine",
    },
    # The course space's network family, trained the usual way (BN, Adam, small widths).
    "course-bn": {
        "learning_rate_init": 2e-3,
        "batch_size": 64,
        "kernel_size": 3,
        "use_BN": True,
        "global_avg_pooling": True,
        "dropout_rate": 0.1,
        "n_conv_layers": 3,
        "n_channels_conv_0": 32,
        "n_channels_conv_1": 64,
        "n_channels_conv_2": 128,
        "n_fc_layers": 1,
        "n_channels_fc_0": 64,
        "optimizer": "adam",
        "train_criterion": "cross_entropy",
    },
    "course-bn-small": {
        "learning_rate_init": 3e-3,
        "batch_size": 32,
        "kernel_size": 3,
        "use_BN": True,
        "global_avg_pooling": True,
        "dropout_rate": 0.05,
        "n_conv_layers": 3,
        "n_channels_conv_0": 16,
        "n_channels_conv_1": 32,
        "n_channels_conv_2": 64,
        "n_fc_layers": 1,
        "n_channels_fc_0": 32,
        "optimizer": "adamw",
        "train_criterion": "cross_entropy",
    },
}
"""General starting points for the initial population (not tuned to one data set): each is used
in the spaces where it is a valid configuration, before any random sample."""
