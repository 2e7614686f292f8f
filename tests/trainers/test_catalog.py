"""The model names validation accepts are the ones the installed torchvision has."""

import torchvision

from ftmatrix import catalog


def test_torchvision_classifier_names_match_the_installed_torchvision():
    assert (
        set(torchvision.models.list_models(module=torchvision.models))
        == catalog.TORCHVISION_CLASSIFIERS
    )
