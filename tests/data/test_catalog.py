import pytest

from spfde_core.data import get_dataset_info


def test_known_datasets_have_their_constants():
    cifar10 = get_dataset_info("cifar10")
    assert (cifar10.num_classes, cifar10.image_size, cifar10.in_memory) == (10, 32, True)
    assert cifar10.mean == (0.4914, 0.4822, 0.4465) and cifar10.std == (0.2023, 0.1994, 0.2010)
    assert get_dataset_info("cifar100").num_classes == 100
    imagenet = get_dataset_info("imagenet")
    assert (imagenet.num_classes, imagenet.image_size, imagenet.in_memory) == (1000, 224, False)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="cifar10, cifar100, imagenet, synthetic"):
        get_dataset_info("mnist")
