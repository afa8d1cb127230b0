"""Canonical JSON, keys, DSSE envelopes and in-toto Statements (acards.canonical, acards.attest.in_toto).

Checked against others' work where it exists: the RFC 8785 test data, the DSSE protocol's worked
example (PAE bytes and a published P-256 signature) and securesystemslib's DSSE implementation.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_vectors import VECTORS, needs_vectors  # noqa: E402

from acards.attest import dsse, in_toto
from acards.attest import keys as key_files
from acards.attest.keys import keyid, load_private_key, load_public_key, new_key
from acards.canonical import canonical_bytes, is_canonical, parse_strict_json
from acards.errors import AcardsError

RFC8785_DIR = (VECTORS or Path("/nonexistent")) / "rfc8785" / "testdata"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def _code(excinfo) -> str:
    return excinfo.value.code


# --- canonical JSON ----------------------------------------------------------------------------


@needs_vectors
@pytest.mark.parametrize("name", sorted(p.name for p in (RFC8785_DIR / "input").glob("*.json")))
def test_rfc8785_vectors(name):
    source = (RFC8785_DIR / "input" / name).read_bytes()
    expected = (RFC8785_DIR / "output" / name).read_bytes()
    assert canonical_bytes(parse_strict_json(source)) == expected
    assert is_canonical(expected)
    assert not is_canonical(source)


@needs_vectors
def test_rfc8785_vectors_are_all_there():
    assert len(list((RFC8785_DIR / "input").glob("*.json"))) == 6


@pytest.mark.parametrize(
    "data, code",
    [
        (b'{"a":1,"a":2}', "envelope.duplicate-key"),
        (b'{"a":{"b":1,"b":1}}', "envelope.duplicate-key"),
        (b'[{"x":1},{"y":1,"y":1}]', "envelope.duplicate-key"),
        (b"NaN", "envelope.bad-number"),
        (b'{"a":Infinity}', "envelope.bad-number"),
        (b"[-Infinity]", "envelope.bad-number"),
        (b"1e400", "envelope.bad-number"),
        (b"9007199254740992", "envelope.bad-number"),  # 2^53
        (b"9007199254740993", "envelope.bad-number"),  # 2^53 + 1
        (b"-9007199254740993", "envelope.bad-number"),
        (b"1" + b"0" * 5000, "envelope.bad-number"),  # beyond Python's int-parsing limit
        (b'"\\ud800"', "envelope.lone-surrogate"),
        (b'"\\udc00"', "envelope.lone-surrogate"),
        (b'"x\\ud83dy"', "envelope.lone-surrogate"),
        (b'"\\ude02\\ud83d"', "envelope.lone-surrogate"),  # a pair in the wrong order
        (b'{"\\ud800":1}', "envelope.lone-surrogate"),
        (b'[["\\udfff"]]', "envelope.lone-surrogate"),
        (b'"\xff"', "envelope.bad-json"),
        (b'"\xc0\xaf"', "envelope.bad-json"),  # overlong encoding
        (b'"\xed\xa0\x80"', "envelope.bad-json"),  # a surrogate written as UTF-8 (CESU-8)
        (b"\xef\xbb\xbf{}", "envelope.bad-json"),  # byte order mark
        (b"", "envelope.bad-json"),
        (b"{} x", "envelope.bad-json"),
        (b"{'a':1}", "envelope.bad-json"),
        (b'"a\x01"', "envelope.bad-json"),  # raw control character
        (b"[" * 100_000, "envelope.bad-json"),
        (b"[" * 100_000 + b"]" * 100_000, "envelope.bad-json"),
    ],
)
def test_parse_strict_json_refuses(data, code):
    with pytest.raises(AcardsError) as excinfo:
        parse_strict_json(data)
    assert _code(excinfo) == code
    assert not is_canonical(data)


def test_parse_strict_json_accepts_edges():
    assert parse_strict_json(b"9007199254740991") == 2**53 - 1
    assert parse_strict_json(b"-9007199254740991") == -(2**53) + 1
    assert parse_strict_json(b'"\\ud83d\\ude02"') == "\U0001f602"
    assert parse_strict_json(' \n{"é": [1.5, true, null]}\t'.encode()) == {"é": [1.5, True, None]}


def test_parse_strict_json_reports_position_and_source():
    with pytest.raises(AcardsError) as excinfo:
        parse_strict_json(b'{\n  "a": }', source="card.json")
    location = excinfo.value.problems[0].location
    assert (location.file, location.line, location.column) == ("card.json", 2, 8)


def test_parse_strict_json_wants_bytes():
    with pytest.raises(AcardsError) as excinfo:
        parse_strict_json("{}")
    assert _code(excinfo) == "envelope.bad-json"


@pytest.mark.parametrize(
    "value",
    [{1: 2}, float("nan"), float("inf"), 2**53, -(2**53), object(), "\ud800", {"\ud800": 1}],
)
def test_canonical_bytes_refuses_unrepresentable(value):
    with pytest.raises(AcardsError) as excinfo:
        canonical_bytes(value)
    assert _code(excinfo) == "envelope.not-canonicalizable"


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"a":1}', True),
        (b'{"a": 1}', False),
        (b'{"b":1,"a":2}', False),
        (b"1.0", False),
        (b"1", True),
        (b'"\\u00e9"', False),
        ('"é"'.encode(), True),
        (b'{"a":1,"a":1}', False),
        (b"\xff", False),
    ],
)
def test_is_canonical(data, expected):
    assert is_canonical(data) is expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_parse_strict_json_bytes(data):
    try:
        parse_strict_json(data)
    except AcardsError:
        pass


@FUZZ
@given(json_values, st.booleans())
def test_fuzz_parse_strict_json_documents(value, ensure_ascii):
    # json.dumps writes NaN, 2^60 and lone surrogates happily: each must be refused with a code.
    data = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    try:
        parsed = parse_strict_json(data)
    except AcardsError:
        return
    assert canonical_bytes(parsed) == canonical_bytes(value)


# --- keys --------------------------------------------------------------------------------------


FAST = 2**10  # a test-only scrypt cost: the file records it; the default is asserted below


def test_new_key_files(tmp_path):
    path = tmp_path / "author.key"
    returned = new_key(path, b"correct horse", scrypt_n=FAST)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    sealed = json.loads(path.read_bytes())
    assert sealed["format"] == key_files.ENCRYPTED_FORMAT and sealed["keyid"] == returned
    assert sealed["kdf"]["name"] == "scrypt" and sealed["kdf"]["n"] == FAST
    public_pem = Path(f"{path}.pub").read_bytes()
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    public_key = load_public_key(f"{path}.pub")
    assert keyid(public_key) == returned
    private_key = load_private_key(path, b"correct horse")
    assert keyid(private_key.public_key()) == returned


def test_keyid_is_sha256_of_spki_der():
    import hashlib

    public_key = Ed25519PrivateKey.generate().public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keyid(public_key) == hashlib.sha256(der).hexdigest()


def test_unencrypted_key(tmp_path):
    path = tmp_path / "plain.key"
    new_key(path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    load_private_key(path)
    with pytest.raises(AcardsError) as excinfo:
        load_private_key(path, b"unexpected")
    assert _code(excinfo) == "key.bad-passphrase"


def test_a_new_key_is_sealed_with_scrypt_at_the_default_cost(tmp_path):
    """The one test that pays the real cost: scrypt with N = 2^17, r = 8 (128 MiB), p = 1."""
    assert (key_files.SCRYPT_N, key_files.SCRYPT_R, key_files.SCRYPT_P) == (2**17, 8, 1)
    path = tmp_path / "author.key"
    returned = new_key(path, b"correct horse")
    kdf = json.loads(path.read_bytes())["kdf"]
    assert (kdf["name"], kdf["n"], kdf["r"], kdf["p"], len(base64.b64decode(kdf["salt"]))) == ("scrypt", 2**17, 8, 1, 16)
    assert keyid(load_private_key(path, b"correct horse").public_key()) == returned
    assert not key_files.reencrypt_key(path, b"correct horse")  # already at the default cost


def _legacy_pkcs8(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """A key file as earlier acards wrote it: PKCS#8 PEM under PBKDF2 (BestAvailableEncryption)."""
    private_key = Ed25519PrivateKey.generate()
    path.write_bytes(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(passphrase)))
    path.chmod(0o600)
    return private_key


def test_old_pkcs8_key_files_still_load_and_can_be_re_encrypted(tmp_path):
    path = tmp_path / "old.key"
    private_key = _legacy_pkcs8(path, b"old secret")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert keyid(load_private_key(path, b"old secret").public_key()) == keyid(private_key.public_key())
    with pytest.raises(AcardsError) as excinfo:
        key_files.reencrypt_key(path, b"wrong", scrypt_n=FAST)
    assert _code(excinfo) == "key.bad-passphrase" and path.read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    assert key_files.reencrypt_key(path, b"old secret", scrypt_n=FAST)
    assert json.loads(path.read_bytes())["format"] == key_files.ENCRYPTED_FORMAT
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyid(load_private_key(path, b"old secret").public_key()) == keyid(private_key.public_key())
    assert [p.name for p in tmp_path.iterdir()] == ["old.key"]  # no temporary file left
    plain = tmp_path / "plain.key"
    new_key(plain)
    with pytest.raises(AcardsError) as excinfo:
        key_files.reencrypt_key(plain, b"anything", scrypt_n=FAST)
    assert _code(excinfo) == "key.bad-passphrase"


@pytest.mark.parametrize("change, code", [
    (lambda v: v["kdf"].update(n=2**11), "key.bad-passphrase"),  # a bound parameter: the tag fails
    (lambda v: v["kdf"].update(salt=base64.b64encode(b"0" * 16).decode()), "key.bad-passphrase"),
    (lambda v: v.update(ciphertext=_flip_b64(v["ciphertext"], 0)), "key.bad-passphrase"),
    (lambda v: v.update(keyid="ab" * 32), "key.bad-passphrase"),  # the keyid is bound too
    (lambda v: v["kdf"].update(n=2**30), "key.malformed"),  # never let a file ask for 128 GiB
    (lambda v: v["kdf"].update(n=1000), "key.malformed"),
    (lambda v: v["kdf"].update(name="pbkdf2"), "key.malformed"),
    (lambda v: v["kdf"].update(r=0), "key.malformed"),
    (lambda v: v["cipher"].update(name="none"), "key.malformed"),
    (lambda v: v["cipher"].update(nonce="AAAA"), "key.malformed"),
    (lambda v: v.update(format="other/1"), "key.malformed"),
    (lambda v: v.pop("keyid"), "key.malformed"),
])
def test_a_sealed_key_file_that_was_altered_is_refused(tmp_path, change, code):
    path = tmp_path / "author.key"
    new_key(path, b"right", scrypt_n=FAST)
    value = json.loads(path.read_bytes())
    change(value)
    path.write_bytes(canonical_bytes(value))
    with pytest.raises(AcardsError) as excinfo:
        load_private_key(path, b"right")
    assert _code(excinfo) == code


def test_the_scrypt_cost_is_checked(tmp_path):
    for cost in (0, 1, 3, 2**21, True, 2.0):
        with pytest.raises(AcardsError) as excinfo:
            new_key(tmp_path / "k", b"pw", scrypt_n=cost)
        assert _code(excinfo) == "key.unsupported"
    assert not (tmp_path / "k").exists()


def test_passphrase_errors(tmp_path):
    path = tmp_path / "author.key"
    new_key(path, b"right", scrypt_n=FAST)
    for passphrase in (b"wrong", None):
        with pytest.raises(AcardsError) as excinfo:
            load_private_key(path, passphrase)
        assert _code(excinfo) == "key.bad-passphrase"
    for passphrase in (b"", "right"):
        with pytest.raises(AcardsError) as excinfo:
            new_key(tmp_path / "other.key", passphrase, scrypt_n=FAST)
        assert _code(excinfo) == "key.bad-passphrase"
    assert not (tmp_path / "other.key").exists()


def test_new_key_refuses_to_overwrite(tmp_path):
    path = tmp_path / "author.key"
    new_key(path)
    before = path.read_bytes(), Path(f"{path}.pub").read_bytes()
    with pytest.raises(AcardsError) as excinfo:
        new_key(path)
    assert _code(excinfo) == "key.exists"
    assert (path.read_bytes(), Path(f"{path}.pub").read_bytes()) == before

    # A stray .pub alone also stops it, and no private key is left behind.
    lonely = tmp_path / "lonely.key"
    Path(f"{lonely}.pub").write_bytes(b"old")
    with pytest.raises(AcardsError) as excinfo:
        new_key(lonely)
    assert _code(excinfo) == "key.exists"
    assert not lonely.exists()


def test_new_key_into_missing_folder(tmp_path):
    with pytest.raises(AcardsError) as excinfo:
        new_key(tmp_path / "missing" / "author.key")
    assert _code(excinfo) == "key.unwritable"


def test_key_loading_errors(tmp_path):
    with pytest.raises(AcardsError) as excinfo:
        load_private_key(tmp_path / "absent.key")
    assert _code(excinfo) == "key.unreadable"
    with pytest.raises(AcardsError) as excinfo:
        load_public_key(tmp_path / "absent.pub")
    assert _code(excinfo) == "key.unreadable"

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a key")
    for load in (load_private_key, load_public_key):
        with pytest.raises(AcardsError) as excinfo:
            load(garbage)
        assert _code(excinfo) == "key.malformed"

    p256 = ec.generate_private_key(ec.SECP256R1())
    other = tmp_path / "p256.key"
    other.write_bytes(
        p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    other_pub = tmp_path / "p256.pub"
    other_pub.write_bytes(
        p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(AcardsError) as excinfo:
        load_private_key(other)
    assert _code(excinfo) == "key.unsupported"
    with pytest.raises(AcardsError) as excinfo:
        load_public_key(other_pub)
    assert _code(excinfo) == "key.unsupported"
    with pytest.raises(AcardsError) as excinfo:
        keyid(p256.public_key())
    assert _code(excinfo) == "key.unsupported"


# --- DSSE --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys():
    """Three in-memory Ed25519 keys, by name, each with its keyid."""
    made = {}
    for name in ("alice", "bob", "carol"):
        private_key = Ed25519PrivateKey.generate()
        made[name] = (private_key, keyid(private_key.public_key()))
    return made


def _trusted(keys, *names):
    return {keys[n][1]: keys[n][0].public_key() for n in names}


def _card_statement(extra: dict | None = None) -> dict:
    predicate = {"card": {"id": "example", "version": 1, "score": 0.25}, "report": {"ok": True}}
    predicate.update(extra or {})
    return in_toto.statement(
        [("card.yaml", SHA_A), ("evidence/outputs.jsonl", SHA_B)], in_toto.PREDICATE_TYPE, predicate
    )


def _signed(keys, *names, payload: bytes | None = None) -> bytes:
    if payload is None:
        payload = canonical_bytes(_card_statement())
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, keys[names[0]][0])
    for i, name in enumerate(names[1:], 1):
        envelope = dsse.add_signature(envelope, keys[name][0], _trusted(keys, *names[:i]))
    return canonical_bytes(envelope)


@needs_vectors
def test_pae_matches_the_dsse_example():
    example = json.loads((VECTORS / "dsse" / "hello-world.json").read_text())
    got = dsse.pae(example["payload_type"], example["serialized_body"].encode())
    assert got == example["pae"].encode()
    assert dsse.pae("", b"") == b"DSSEv1 0  0 "
    assert dsse.pae("é", b"\x00") == "DSSEv1 2 é 1 \x00".encode()  # lengths count bytes


@needs_vectors
def test_dsse_example_signature_verifies_over_our_pae():
    """The published P-256 signature can only verify if pae() produced the very bytes it signed."""
    example = json.loads((VECTORS / "dsse" / "hello-world.json").read_text())
    numbers = ec.EllipticCurvePublicNumbers(
        int(example["key"]["x"]), int(example["key"]["y"]), ec.SECP256R1()
    )
    public_key = numbers.public_key()
    envelope = example["envelope"]
    raw = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    payload = base64.b64decode(envelope["payload"], validate=True)
    public_key.verify(der, dsse.pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(Exception):
        public_key.verify(
            der, dsse.pae(envelope["payloadType"], payload + b"!"), ec.ECDSA(hashes.SHA256())
        )


def test_sign_verify_open_round_trip(keys):
    statement = _card_statement()
    payload = canonical_bytes(statement)
    result = dsse.verify_envelope(_signed(keys, "alice"), _trusted(keys, "alice"))
    payload_type, verified_payload, keyids = result
    assert (payload_type, verified_payload, keyids) == (
        dsse.PAYLOAD_TYPE,
        payload,
        (keys["alice"][1],),
    )
    assert result.unknown_keyids == () and result.invalid_keyids == ()
    assert in_toto.open_statement(payload_type, verified_payload) == statement
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://acards.dev/AcceptanceCard/v1"


def test_envelope_shape(keys):
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, b"{}", keys["alice"][0])
    assert set(envelope) == {"payload", "payloadType", "signatures"}
    assert envelope["payload"] == "e30="
    assert [set(s) for s in envelope["signatures"]] == [{"keyid", "sig"}]
    assert envelope["signatures"][0]["keyid"] == keys["alice"][1]


def test_securesystemslib_verifies_our_envelopes(keys):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    data = _signed(keys, "alice", "bob")
    envelope = Envelope.from_dict(json.loads(data))
    sslib_keys = [
        SSlibKey.from_crypto(keys[name][0].public_key(), keyid=keys[name][1])
        for name in ("alice", "bob")
    ]
    accepted = envelope.verify(sslib_keys, 2)
    assert set(accepted) == {keys["alice"][1], keys["bob"][1]}
    assert envelope.payload == canonical_bytes(_card_statement())


def test_we_verify_securesystemslib_envelopes(keys):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey

    private_key, key_id = keys["carol"]
    signer = CryptoSigner(private_key, SSlibKey.from_crypto(private_key.public_key(), keyid=key_id))
    payload = canonical_bytes(_card_statement())
    envelope = Envelope(payload, dsse.PAYLOAD_TYPE, {})
    envelope.sign(signer)
    data = json.dumps(envelope.to_dict()).encode()
    _, verified, keyids = dsse.verify_envelope(data, _trusted(keys, "carol"))
    assert verified == payload and keyids == (key_id,)


def _flip_b64(text: str, position: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[position] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_every_flipped_payload_byte_fails(keys):
    envelope = json.loads(_signed(keys, "alice"))
    trusted = _trusted(keys, "alice")
    length = len(base64.b64decode(envelope["payload"]))
    assert length >= 200
    for position in range(length):
        tampered = dict(envelope, payload=_flip_b64(envelope["payload"], position))
        with pytest.raises(AcardsError) as excinfo:
            dsse.verify_envelope(canonical_bytes(tampered), trusted)
        assert _code(excinfo) == "envelope.bad-signature"


def test_every_flipped_signature_or_type_byte_fails(keys):
    envelope = json.loads(_signed(keys, "alice"))
    trusted = _trusted(keys, "alice")
    signature = envelope["signatures"][0]
    for position in range(64):
        tampered = dict(
            envelope, signatures=[dict(signature, sig=_flip_b64(signature["sig"], position))]
        )
        with pytest.raises(AcardsError) as excinfo:
            dsse.verify_envelope(canonical_bytes(tampered), trusted)
        assert _code(excinfo) == "envelope.bad-signature"
    payload_type = envelope["payloadType"]
    for position in range(len(payload_type)):
        changed = (
            payload_type[:position]
            + chr(ord(payload_type[position]) ^ 0x01)
            + payload_type[position + 1 :]
        )
        tampered = dict(envelope, payloadType=changed)
        with pytest.raises(AcardsError) as excinfo:
            dsse.verify_envelope(canonical_bytes(tampered), trusted)
        assert _code(excinfo) == "envelope.bad-signature"


def test_every_flipped_envelope_byte_fails(keys):
    data = _signed(keys, "alice")
    trusted = _trusted(keys, "alice")
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises(AcardsError) as excinfo:
            dsse.verify_envelope(bytes(tampered), trusted)
        assert _code(excinfo).startswith("envelope.")


def test_wrong_and_unknown_keys(keys):
    data = _signed(keys, "alice")
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "bob"))
    assert _code(excinfo) == "envelope.unknown-keyid"
    assert keys["alice"][1] in str(excinfo.value)
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, {})
    assert _code(excinfo) == "envelope.unknown-keyid"

    # Bob's key filed under Alice's id must not make Bob's key vouch for Alice.
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, {keys["alice"][1]: keys["bob"][0].public_key()})
    assert _code(excinfo) == "key.keyid-mismatch"

    # Bob signs but claims to be Alice: Alice's key does not verify it.
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, b"{}", keys["bob"][0])
    envelope["signatures"][0]["keyid"] = keys["alice"][1]
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(canonical_bytes(envelope), _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.bad-signature"


def test_thresholds_and_co_signatures(keys):
    data = _signed(keys, "alice", "bob", "carol")
    result = dsse.verify_envelope(data, _trusted(keys, "alice", "bob"), threshold=2)
    assert set(result.keyids) == {keys["alice"][1], keys["bob"][1]}
    assert result.unknown_keyids == (keys["carol"][1],)  # reported, not counted
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice", "bob"), threshold=3)
    assert _code(excinfo) == "envelope.unknown-keyid"
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice", "bob", "carol"), threshold=4)
    assert _code(excinfo) == "envelope.too-few-signatures"
    for threshold in (0, -1, True, 1.0, "1"):
        with pytest.raises(AcardsError) as excinfo:
            dsse.verify_envelope(data, _trusted(keys, "alice"), threshold=threshold)
        assert _code(excinfo) == "envelope.bad-threshold"


def test_duplicate_signatures_count_once(keys):
    envelope = json.loads(_signed(keys, "alice"))
    envelope["signatures"] = envelope["signatures"] * 3
    data = canonical_bytes(envelope)
    assert dsse.verify_envelope(data, _trusted(keys, "alice")).keyids == (keys["alice"][1],)
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice"), threshold=2)
    assert _code(excinfo) == "envelope.too-few-signatures"
    with pytest.raises(AcardsError) as excinfo:
        dsse.add_signature(envelope, keys["alice"][0], _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.duplicate-signature"


def test_co_signing_verifies_the_existing_signatures_first(keys):
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, canonical_bytes(_card_statement()), keys["alice"][0])
    for trusted, code in (({}, "envelope.unknown-keyid"), (_trusted(keys, "carol"), "envelope.unknown-keyid")):
        with pytest.raises(AcardsError) as excinfo:
            dsse.add_signature(envelope, keys["bob"][0], trusted)
        assert _code(excinfo) == code
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[0] ^= 1
    forged = dict(envelope, signatures=[dict(envelope["signatures"][0], sig=base64.b64encode(bytes(signature)).decode())])
    with pytest.raises(AcardsError) as excinfo:
        dsse.add_signature(forged, keys["bob"][0], _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.bad-signature"
    # A forged repeat of a valid signer's entry is still a forgery (verify_envelope counts it once).
    repeated = dict(envelope, signatures=envelope["signatures"] + forged["signatures"])
    assert dsse.verify_envelope(canonical_bytes(repeated), _trusted(keys, "alice")).keyids == (keys["alice"][1],)
    with pytest.raises(AcardsError) as excinfo:
        dsse.add_signature(repeated, keys["bob"][0], _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.bad-signature"
    with pytest.raises(AcardsError) as excinfo:  # an extra, unknown signer is not vouched for either
        dsse.add_signature(json.loads(_signed(keys, "alice", "carol")), keys["bob"][0], _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.unknown-keyid"
    both = dsse.add_signature(envelope, keys["bob"][0], _trusted(keys, "alice"))
    assert dsse.verify_envelope(canonical_bytes(both), _trusted(keys, "alice", "bob"), threshold=2).keyids


def test_one_bad_signature_among_good_ones(keys):
    envelope = json.loads(_signed(keys, "alice", "bob"))
    bob = envelope["signatures"][1]
    envelope["signatures"][1] = dict(bob, sig=_flip_b64(bob["sig"], 0))
    data = canonical_bytes(envelope)
    result = dsse.verify_envelope(data, _trusted(keys, "alice", "bob"))
    assert result.keyids == (keys["alice"][1],)
    assert result.invalid_keyids == (keys["bob"][1],)
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice", "bob"), threshold=2)
    assert _code(excinfo) == "envelope.bad-signature"


def _valid_envelope_dict(keys) -> dict:
    return json.loads(_signed(keys, "alice"))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: [],
        lambda e: "envelope",
        lambda e: {k: v for k, v in e.items() if k != "payload"},
        lambda e: {k: v for k, v in e.items() if k != "signatures"},
        lambda e: dict(e, extra=1),
        lambda e: dict(e, payloadType=7),
        lambda e: dict(e, payload=None),
        lambda e: dict(e, payload=e["payload"] + "\n"),
        lambda e: dict(e, payload=" e30="),
        lambda e: dict(e, payload="e30=e30="),  # data after padding
        lambda e: dict(e, payload="e30"),  # missing padding
        lambda e: dict(e, payload="e31="),  # non-zero padding bits: a second spelling of "{}"
        lambda e: dict(e, payload="-_-_"),  # URL-safe alphabet
        lambda e: dict(e, signatures=[]),
        lambda e: dict(e, signatures={}),
        lambda e: dict(e, signatures=["sig"]),
        lambda e: dict(e, signatures=[{"sig": e["signatures"][0]["sig"]}]),
        lambda e: dict(e, signatures=[dict(e["signatures"][0], keyid=None)]),
        lambda e: dict(e, signatures=[dict(e["signatures"][0], note="x")]),
        lambda e: dict(e, signatures=[dict(e["signatures"][0], sig="!!")]),
    ],
)
def test_malformed_envelopes(keys, mutate):
    data = canonical_bytes(mutate(_valid_envelope_dict(keys)))
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.malformed"


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "envelope.bad-json"),
        (b"\xff", "envelope.bad-json"),
        (
            b'{"payload":"e30=","payload":"e30=","payloadType":"x","signatures":[]}',
            "envelope.duplicate-key",
        ),
        (b'{"payload":"e30=","payloadType":"\\ud800","signatures":[]}', "envelope.lone-surrogate"),
    ],
)
def test_unreadable_envelopes(keys, data, code):
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(data, _trusted(keys, "alice"))
    assert _code(excinfo) == code


def test_signature_is_checked_before_the_payload_is_read(keys):
    # A payload that is not even JSON still fails on its signature first.
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, b"\xff not json", keys["bob"][0])
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(canonical_bytes(envelope), _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.unknown-keyid"


# --- statements --------------------------------------------------------------------------------


def _open_signed_payload(keys, payload: bytes, payload_type: str = dsse.PAYLOAD_TYPE):
    envelope = dsse.sign_envelope(payload_type, payload, keys["alice"][0])
    verified = dsse.verify_envelope(canonical_bytes(envelope), _trusted(keys, "alice"))
    return in_toto.open_statement(verified.payload_type, verified.payload)


@pytest.mark.parametrize(
    "payload, code",
    [
        # Signed correctly, but not in canonical form: the card digest would be ambiguous.
        (lambda s: json.dumps(s).encode(), "envelope.non-canonical"),
        (
            lambda s: json.dumps(s, sort_keys=True, separators=(",", ":")).encode() + b"\n",
            "envelope.non-canonical",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'"score":0.25', b'"score":2.5e-1'),
            "envelope.non-canonical",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'"version":1', b'"version":1.0'),
            "envelope.non-canonical",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'{"ok":true}', b'{"ok":true,"ok":true}'),
            "envelope.duplicate-key",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'"version":1', b'"version":NaN'),
            "envelope.bad-number",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'"version":1', b'"version":9007199254740993'),
            "envelope.bad-number",
        ),
        (
            lambda s: canonical_bytes(s).replace(b'"example"', b'"ex\\ud800"'),
            "envelope.lone-surrogate",
        ),
        (lambda s: b"\xff" + canonical_bytes(s), "envelope.bad-json"),
    ],
)
def test_open_statement_refuses_non_canonical_payloads(keys, payload, code):
    with pytest.raises(AcardsError) as excinfo:
        _open_signed_payload(keys, payload(_card_statement()))
    assert _code(excinfo) == code


def _with(statement: dict, **changes) -> dict:
    changed = dict(statement, **changes)
    return {k: v for k, v in changed.items() if v is not ...}


@pytest.mark.parametrize(
    "change, code",
    [
        (dict(_type="https://in-toto.io/Statement/v0.1"), "envelope.unknown-statement-type"),
        (dict(_type=...), "envelope.unknown-statement-type"),
        (dict(predicateType="https://slsa.dev/provenance/v1"), "envelope.unknown-predicate-type"),
        (dict(predicateType=...), "envelope.bad-statement"),
        (dict(predicate=[]), "envelope.bad-statement"),
        (dict(predicate=...), "envelope.bad-statement"),
        (dict(extra=1), "envelope.bad-statement"),
        (dict(subject=[]), "envelope.bad-statement"),
        (dict(subject={}), "envelope.bad-statement"),
        (
            dict(subject=[{"name": "a", "digest": {"sha256": SHA_A.upper()}}]),
            "envelope.bad-statement",
        ),
        (dict(subject=[{"name": "a", "digest": {"sha256": SHA_A[:-1]}}]), "envelope.bad-statement"),
        (
            dict(subject=[{"name": "a", "digest": {"sha256": SHA_A, "sha512": SHA_A}}]),
            "envelope.bad-statement",
        ),
        (dict(subject=[{"name": "a", "digest": {"sha1": SHA_A[:40]}}]), "envelope.bad-statement"),
        (dict(subject=[{"name": "a", "digest": SHA_A}]), "envelope.bad-statement"),
        (dict(subject=[{"name": 1, "digest": {"sha256": SHA_A}}]), "envelope.bad-statement"),
        (dict(subject=[{"name": "", "digest": {"sha256": SHA_A}}]), "envelope.bad-statement"),
        (dict(subject=[{"digest": {"sha256": SHA_A}}]), "envelope.bad-statement"),
        (
            dict(subject=[{"name": "a", "digest": {"sha256": SHA_A}, "uri": "x"}]),
            "envelope.bad-statement",
        ),
        (dict(subject=[{"name": "a", "digest": {"sha256": SHA_A}}] * 2), "envelope.bad-statement"),
    ],
)
def test_open_statement_refuses_bad_statements(keys, change, code):
    payload = canonical_bytes(_with(_card_statement(), **change))
    with pytest.raises(AcardsError) as excinfo:
        _open_signed_payload(keys, payload)
    assert _code(excinfo) == code


def test_open_statement_refuses_other_payloads(keys):
    payload = canonical_bytes(_card_statement())
    with pytest.raises(AcardsError) as excinfo:
        _open_signed_payload(keys, payload, payload_type="application/json")
    assert _code(excinfo) == "envelope.unknown-payload-type"
    with pytest.raises(AcardsError) as excinfo:
        _open_signed_payload(keys, b"[]")
    assert _code(excinfo) == "envelope.bad-statement"


@pytest.mark.parametrize(
    "subjects, predicate_type, predicate",
    [
        ([], in_toto.PREDICATE_TYPE, {}),
        ([("a", SHA_A.upper())], in_toto.PREDICATE_TYPE, {}),
        ([("a",)], in_toto.PREDICATE_TYPE, {}),
        (None, in_toto.PREDICATE_TYPE, {}),
        ([("a", SHA_A)], "", {}),
        ([("a", SHA_A)], in_toto.PREDICATE_TYPE, []),
    ],
)
def test_statement_builder_refuses_bad_input(subjects, predicate_type, predicate):
    with pytest.raises(AcardsError) as excinfo:
        in_toto.statement(subjects, predicate_type, predicate)
    assert _code(excinfo) == "envelope.bad-statement"


def test_sign_envelope_refuses_bad_input(keys):
    with pytest.raises(AcardsError) as excinfo:
        dsse.sign_envelope(dsse.PAYLOAD_TYPE, "text", keys["alice"][0])
    assert _code(excinfo) == "envelope.malformed"
    with pytest.raises(AcardsError) as excinfo:
        dsse.sign_envelope(dsse.PAYLOAD_TYPE, b"{}", keys["alice"][0].public_key())
    assert _code(excinfo) == "key.unsupported"
    with pytest.raises(AcardsError) as excinfo:
        dsse.add_signature({"payload": "e30="}, keys["alice"][0], {})
    assert _code(excinfo) == "envelope.malformed"


# --- fuzzing -----------------------------------------------------------------------------------

envelope_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["e30=", "", "=", "AAAA"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(
        st.sampled_from(["payload", "payloadType", "signatures", "keyid", "sig", "x"]),
        children,
        max_size=4,
    ),
    max_leaves=15,
)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_verify_envelope_bytes(keys, data):
    with pytest.raises(AcardsError):
        dsse.verify_envelope(data, _trusted(keys, "alice"))


@FUZZ
@given(value=envelope_like)
def test_fuzz_verify_envelope_structures(keys, value):
    with pytest.raises(AcardsError):
        dsse.verify_envelope(json.dumps(value).encode(), _trusted(keys, "alice"))


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_envelopes_never_verify(keys, data):
    original = _signed(keys, "alice", "bob")
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=3))
    mutated = original[:position] + replacement + original[position + 1 :]
    if mutated == original:
        return
    try:
        result = dsse.verify_envelope(mutated, _trusted(keys, "alice", "bob"), threshold=2)
    except AcardsError:
        return
    # Only a change of JSON layout (say, added whitespace) may pass, and then with the same payload.
    assert parse_strict_json(mutated) == parse_strict_json(original)
    assert result.payload == canonical_bytes(_card_statement())


@FUZZ
@given(value=json_values)
def test_fuzz_open_statement(value):
    try:
        payload = canonical_bytes(value)
    except AcardsError:
        return
    with pytest.raises(AcardsError):
        in_toto.open_statement(dsse.PAYLOAD_TYPE, payload)


@pytest.mark.parametrize("length", [0, 1, 63, 65, 512])
def test_signature_of_wrong_length_by_trusted_key(keys, length):
    envelope = _valid_envelope_dict(keys)
    envelope["signatures"][0]["sig"] = base64.b64encode(b"\x07" * length).decode()
    with pytest.raises(AcardsError) as excinfo:
        dsse.verify_envelope(canonical_bytes(envelope), _trusted(keys, "alice"))
    assert _code(excinfo) == "envelope.bad-signature"
