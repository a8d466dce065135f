import numpy as np
import pandas as pd

from pcaptools.addr import from_u128, to_u128


def test_addresses_round_trip_through_u128_for_both_families():
    col = pd.Series(pd.Categorical(["10.0.0.1", None, "2001:db8::1", "10.0.0.1", "::ffff:0:1"]))
    hi, lo, valid = to_u128(col)
    assert valid.tolist() == [True, False, True, True, True]
    back = from_u128(hi, lo, valid)
    assert [None if pd.isna(x) else x for x in back] == ["10.0.0.1", None, "2001:db8::1", "10.0.0.1", "0.0.0.1"]


def test_ipv4_sorts_below_ipv6_as_integers():
    hi, lo, _ = to_u128(pd.Series(pd.Categorical(["192.168.0.1", "fe80::1"])))
    assert (hi[0], lo[0]) < (hi[1], lo[1])
    assert lo[0] == np.uint64(0xFFFF_C0A8_0001)
