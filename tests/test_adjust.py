"""The -a grammar, fragment lines and the check of ``.config``, as pure functions.

Why: the end-to-end tests (test_build_flags.py) show one run per case; the
corner cases of the grammar (prefix optional, ``=n`` as off, quoted strings,
hex spelt two ways, options absent because a dependency is off) are cheaper
and clearer here.
"""

from __future__ import annotations

import pytest

from buildfleet.build.adjust import (
    AdjustError,
    Adjustment,
    failed,
    merge_defconfig,
    parse_adjust_args,
    parse_fragment,
    read_config,
)


def test_forms_of_an_adjustment() -> None:
    got = parse_adjust_args(["FOO,CONFIG_BAR=n", '~BAZ', 'NAME="a b"', "CONFIG_HEX=0x10"])
    assert [a.text for a in got] == ["CONFIG_FOO=y", "~CONFIG_BAR", "~CONFIG_BAZ",
                                     'CONFIG_NAME="a b"', "CONFIG_HEX=0x10"]
    # A later item for the same option wins, in the later position.
    assert [a.text for a in parse_adjust_args(["A,B", "~A"])] == ["CONFIG_B=y", "~CONFIG_A"]


@pytest.mark.parametrize("bad", ["", "A B", "~A=1", "CONFIG_", "A-B=1", "~"])
def test_bad_adjustments_are_refused(bad: str) -> None:
    if not bad:
        assert parse_adjust_args([bad]) == []  # an empty item is nothing, not an error
        return
    with pytest.raises(AdjustError, match="-a/--adjust-cfg"):
        parse_adjust_args([bad])


def test_merge_replaces_the_adjusted_lines_only() -> None:
    minimal = "CONFIG_ARM=y\nCONFIG_FOO=y\n# CONFIG_BAR is not set\nCONFIG_FOOBAR=y\n"
    merged = merge_defconfig(minimal, parse_adjust_args(["~FOO", "BAR"]))
    assert merged == ("CONFIG_ARM=y\nCONFIG_FOOBAR=y\n# CONFIG_FOO is not set\n"
                      "CONFIG_BAR=y\n")


def test_check_names_each_option_that_did_not_hold() -> None:
    config = read_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_H=0x10\n"
                         'CONFIG_S="x"\n')
    want = parse_adjust_args(["A", "~B", "~C", "H=10", "S=x", "B", "D", "~A"])
    assert failed(want, config) == [
        "error: -a CONFIG_B=y did not take effect: .config has '# CONFIG_B is not set' "
        "(a dependency turned it off)",
        "error: -a CONFIG_D=y did not take effect: .config has no CONFIG_D "
        "(its dependencies are not met)",
        "error: -a ~CONFIG_A did not take effect: .config has CONFIG_A=y",
    ]
    # A hex option given without 0x is hex (Kconfig adds the prefix): 16 is 0x16.
    assert failed(parse_adjust_args(["H=16"]), config) == [
        "error: -a CONFIG_H=16 did not take effect: .config has CONFIG_H=0x10"]


def test_fragment_lines_and_errors() -> None:
    adj = parse_fragment("# a comment\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C=n\n",
                         "configs/x.config")
    assert adj == [Adjustment("A", "y", "configs/x.config"),
                   Adjustment("B", None, "configs/x.config"),
                   Adjustment("C", None, "configs/x.config")]
    with pytest.raises(AdjustError, match=r"configs/x.config:2: not a Kconfig assignment"):
        parse_fragment("CONFIG_A=y\nA=y\n", "configs/x.config")
