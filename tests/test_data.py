"The data layer on the real 75-class Fruits-360 subset (skipped without FRUIT360_DATA)."
from conftest import REAL, needs_real_data
from fruit360.data import check_dataset
from fruit360.loaders import get_dls

pytestmark = needs_real_data


def test_subset_summary():
    s = check_dataset(REAL)
    assert len(s.classes) == 75
    assert (s.n_images('Training'), s.n_images('Test')) == (19_468, 6_068)
    assert s.bad == []
    assert s.twins == {('Apple 21', 'Apple Rotten 1'): 341, ('Apple 22', 'Apple worm 1'): 350}


def test_validation_split_is_fixed_by_the_seed():
    files = lambda seed: [str(f) for f in get_dls(REAL, seed=seed, augment=False).valid_ds.items]
    first = files(42)
    assert len(first) == int(0.15 * 19_468)
    assert files(42) == first
    assert files(7) != first


def test_batches_and_test_split():
    dls = get_dls(REAL)
    xb, yb = dls.one_batch()
    assert tuple(xb.shape) == (64, 3, 100, 100) and tuple(yb.shape) == (64,)
    assert len(dls.test.dataset) == 6_068
    assert len(dls.train_ds) + len(dls.valid_ds) == 19_468
