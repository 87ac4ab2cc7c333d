"""CPF, CNPJ (numeric and alphanumeric) and NF-e access keys."""

from __future__ import annotations

import pytest

from daemon.documents import (
    InvalidDocument,
    cnpj_check_digits,
    document_kind,
    format_document,
    is_valid_cnpj,
    is_valid_cpf,
    is_valid_nfe_key,
    make_cnpj,
    make_cpf,
    make_nfe_key,
    nfe_key_check_digit,
    normalize_document,
    validate_document,
)

# Published examples: the Receita Federal's CNPJ of Banco do Brasil, a commonly used valid test CPF, the
# SERPRO example of an alphanumeric CNPJ, and the access key from the NF-e integration manual.
BB_CNPJ = "00.000.000/0001-91"
TEST_CPF = "529.982.247-25"
ALNUM_CNPJ = "12.ABC.345/01DE-35"
MANUAL_NFE_KEY = "52060433009911002506550120000007800267301615"


def test_normalize() -> None:
    assert normalize_document(" 529.982.247-25 ") == "52998224725"
    assert normalize_document("00.000.000/0001-91") == "00000000000191"
    assert normalize_document("12.abc.345/01de-35") == "12ABC34501DE35"
    assert normalize_document("CPF: 529.982.247-25") == "52998224725"  # stray letters: digits only


def test_cpf() -> None:
    assert is_valid_cpf(TEST_CPF)
    assert is_valid_cpf("52998224725")
    assert not is_valid_cpf("529.982.247-24")
    assert not is_valid_cpf("111.111.111-11")  # passes the arithmetic, but is not a CPF
    assert not is_valid_cpf("5299822472")
    assert not is_valid_cpf(BB_CNPJ)


def test_cnpj_numeric_and_alphanumeric() -> None:
    assert is_valid_cnpj(BB_CNPJ)
    assert not is_valid_cnpj("00.000.000/0001-92")
    assert not is_valid_cnpj("00000000000000")
    assert is_valid_cnpj(ALNUM_CNPJ)
    assert cnpj_check_digits("12ABC34501DE") == "35"
    assert not is_valid_cnpj("12.ABC.345/01DE-36")
    assert not is_valid_cnpj(TEST_CPF)


def test_validate_document_messages() -> None:
    assert validate_document(TEST_CPF) == "52998224725"
    assert validate_document(BB_CNPJ) == "00000000000191"
    assert validate_document(ALNUM_CNPJ) == "12ABC34501DE35"
    with pytest.raises(InvalidDocument, match=r"^CPF 123\.456\.789-00: wrong check digits$"):
        validate_document("123.456.789-00")
    with pytest.raises(InvalidDocument, match=r"^CPF 000\.000\.000-00: all digits are the same$"):
        validate_document("00000000000")
    with pytest.raises(InvalidDocument, match=r"^CNPJ 00\.000\.000/0001-92: wrong check digits$"):
        validate_document("00000000000192")
    with pytest.raises(
        InvalidDocument, match=r"^document '12-3': expected 11 digits \(CPF\) or 14 \(CNPJ\), got 3$"
    ):
        validate_document("12-3")
    with pytest.raises(InvalidDocument, match=r"^document is empty$"):
        validate_document("  ")
    with pytest.raises(InvalidDocument, match="no digits"):
        validate_document("n/a")


def test_format_and_kind() -> None:
    assert format_document("52998224725") == "529.982.247-25"
    assert format_document("00000000000191") == "00.000.000/0001-91"
    assert format_document("12ABC34501DE35") == "12.ABC.345/01DE-35"
    assert format_document("123") == "123"
    assert document_kind(TEST_CPF) == "cpf"
    assert document_kind(BB_CNPJ) == "cnpj"
    assert document_kind("123") is None


def test_generators_are_valid_deterministic_and_distinct() -> None:
    cpfs = [make_cpf(n) for n in range(2000)]
    cnpjs = [make_cnpj(n) for n in range(2000)]
    assert all(is_valid_cpf(c) and len(c) == 11 for c in cpfs)
    assert all(is_valid_cnpj(c) and len(c) == 14 for c in cnpjs)
    assert len(set(cpfs)) == len(cpfs)
    assert len(set(cnpjs)) == len(cnpjs)
    assert make_cpf(7) == make_cpf(7)
    assert make_cnpj(3, branch=2)[8:12] == "0002"
    assert is_valid_cnpj(make_cnpj(3, branch=2))


def test_nfe_key() -> None:
    assert nfe_key_check_digit(MANUAL_NFE_KEY[:43]) == 5
    assert is_valid_nfe_key(MANUAL_NFE_KEY)
    assert is_valid_nfe_key(" ".join(MANUAL_NFE_KEY[i : i + 4] for i in range(0, 44, 4)))
    assert not is_valid_nfe_key(MANUAL_NFE_KEY[:43] + "4")
    assert not is_valid_nfe_key(MANUAL_NFE_KEY[:43])
    assert not is_valid_nfe_key(MANUAL_NFE_KEY[:42] + "x5")
    assert not is_valid_nfe_key("٥" * 44)  # non-ASCII digits are not digits here
    with pytest.raises(ValueError, match="expected 43 digits"):
        nfe_key_check_digit("123")


def test_nfe_check_digit_rule_for_remainders_0_and_1() -> None:
    # Remainders 0 and 1 give a check digit of 0, never 10 or 11.
    seen = {nfe_key_check_digit(f"{n:043d}") for n in range(200)}
    assert seen <= set(range(10))
    assert 0 in seen


def test_make_nfe_key() -> None:
    key = make_nfe_key(1234, cnpj=BB_CNPJ)
    assert len(key) == 44 and is_valid_nfe_key(key)
    assert key[:6] == "352611"
    assert key[6:20] == "00000000000191"
    assert key[20:22] == "55"
    assert key[25:34] == "000001234"
    assert make_nfe_key(1) != make_nfe_key(2)
