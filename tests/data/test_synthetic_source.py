import numpy as np

from spfde_core.data.sources.synthetic import make_synthetic


def test_deterministic_and_balanced():
    a = make_synthetic(num_train=60, num_test=30, num_classes=3, image_size=16, seed=1)
    b = make_synthetic(num_train=60, num_test=30, num_classes=3, image_size=16, seed=1)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert a.train_images.shape == (60, 16, 16, 3) and a.train_images.dtype == np.uint8
    assert np.bincount(a.train_labels).tolist() == [20, 20, 20]


def test_class_is_learnable():
    # A nearest-class-mean classifier fitted on train must beat chance by far on test.
    data = make_synthetic(num_train=500, num_test=200, num_classes=10, seed=0)
    x_train = data.train_images.reshape(500, -1).astype(np.float32)
    x_test = data.test_images.reshape(200, -1).astype(np.float32)
    centroids = np.stack([x_train[data.train_labels == c].mean(0) for c in range(10)])
    pred = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == data.test_labels).mean() > 0.5
