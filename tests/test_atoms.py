"""The vocabulary: the Atoms result type and the option letters."""

import pytest

from pidcore.atoms import ATOMS, Atoms, option_letters


def test_atoms_give_the_informations_they_add_up_to():
    atoms = Atoms(r=0.3, u1=0.2, u2=0.1, s=0.5)
    assert (atoms.i1, atoms.i2, atoms.iq, atoms.i12) == pytest.approx((0.5, 0.4, 0.6, 1.1))
    assert atoms["u2"] == 0.1 and atoms["i12"] == pytest.approx(1.1)
    assert list(atoms.as_dict()) == list(ATOMS)
    with pytest.raises(KeyError):
        atoms["x"]


def test_atoms_from_a_mapping_keep_negative_values():
    atoms = Atoms.from_mapping({"r": -0.01, "u1": 0.0, "u2": 2, "s": -0.2, "i1": 9.0})
    assert atoms == Atoms(-0.01, 0.0, 2.0, -0.2) and atoms.bounds is None


def test_option_letters():
    assert option_letters(4) == ["A", "B", "C", "D"]
    for count in (1, 27):
        with pytest.raises(ValueError, match="between 2 and 26 options"):
            option_letters(count)
