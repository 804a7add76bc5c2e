"""Writes the fuzz targets' seed corpora (seeds/<target>/) and keys.json, the key set the token
target verifies with. Run from the repository root with the test virtualenv:

    .venv/bin/python filter/fuzz/make_seeds.py

The seeds are what the tests feed the same parsers: real signed tokens of each algorithm and the
usual broken ones, JWKS documents, the plugin configurations we ship, and the JSON-RPC bodies of
the parser-differential tests. Keys are generated afresh each run; commit keys.json and the
seeds together."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ISSUER = "http://127.0.0.1:9000"  # fuzzing.rs: TOKEN_ISSUER
AUDIENCE = "http://127.0.0.1:10000/mcp"  # fuzzing.rs: TOKEN_AUDIENCE
NOW = 1_800_000_000  # fuzzing.rs: TOKEN_NOW


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int, size: int | None = None) -> str:
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


def jwt(header: dict, claims: dict, sign) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def main() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    ed_pub = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ec_nums = p256.public_key().public_numbers()
    rsa_nums = rsa_key.public_key().public_numbers()
    jwks = {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "use": "sig", "x": b64(ed_pub)},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "use": "sig",
             "x": uint(ec_nums.x, 32), "y": uint(ec_nums.y, 32)},
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "n": uint(rsa_nums.n), "e": uint(rsa_nums.e)},
        ]
    }
    (HERE / "keys.json").write_text(json.dumps(jwks, indent=1) + "\n")

    def es256(message: bytes) -> bytes:
        r, s = utils.decode_dss_signature(p256.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    signers = {
        "ed": ("EdDSA", ed.sign),
        "ec": ("ES256", es256),
        "rsa": ("RS256", lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256())),
    }
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "demo", "client_id": "c1",
              "scope": "mcp:tools mcp:admin", "iat": NOW - 10, "exp": NOW + 300, "jti": "j1"}
    tokens = {}
    for kid, (alg, sign) in signers.items():
        tokens[f"valid-{alg}"] = jwt({"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, sign)
    ed_sign = signers["ed"][1]
    tokens["expired"] = jwt({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}, {**claims, "exp": NOW - 3600}, ed_sign)
    tokens["other-audience"] = jwt({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}, {**claims, "aud": ["x", AUDIENCE + "/"]}, ed_sign)
    scp_claims = {k: v for k, v in claims.items() if k != "scope"} | {"scp": ["mcp:tools"]}
    tokens["valid-scp-array"] = jwt({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}, scp_claims, ed_sign)
    tokens["valid-scope-and-scp"] = jwt({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}, {**claims, "scp": ["a"]}, ed_sign)
    none_header = b64(json.dumps({"alg": "none"}).encode())
    tokens["alg-none"] = f"{none_header}.{b64(json.dumps(claims).encode())}."
    tokens["hs256"] = jwt({"alg": "HS256", "kid": "ed", "typ": "at+jwt"}, claims, lambda m: b"\0" * 32)
    tokens["unknown-kid"] = jwt({"alg": "EdDSA", "kid": "nope", "typ": "at+jwt"}, claims, ed_sign)
    tokens["crit"] = jwt({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt", "crit": ["exp"]}, claims, ed_sign)
    tokens["garbage"] = "a.b.c"
    write("token", {name: t.encode() for name, t in tokens.items()})

    write("jwks", {
        "keys": json.dumps(jwks).encode(),
        "empty": b'{"keys":[]}',
        "unusable": b'{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}',
        "not-an-object": b"[1,2,3]",
    })

    configs = {"demo": (ROOT / "test-support" / "fixtures" / "demo-filter-config.json").read_bytes()}
    for path in sorted((ROOT / "envoy" / "production").glob("*.yaml")):
        match = re.search(r"value: \|\n((?P<indent> +)\{\n(?:(?P=indent).*\n)+)", path.read_text())
        if match:
            indent = len(match.group("indent"))
            configs[path.stem] = "\n".join(line[indent:] for line in match.group(1).splitlines()).encode()
    write("config", configs)

    bodies = {
        "tools-call": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}',
        "initialize": b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}',
        "batch": b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]',
        "response": b'{"jsonrpc":"2.0","id":1,"result":{}}',
        "case-variant-name": rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","Name":"admin_report"}}',
        "nul-name": rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","name\u0000":"admin_report"}}',
        "duplicate-method": rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","method":"tools/list","params":{"name":"a"}}',
        "folded-params": '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami"},"param\u017f":{"name":"x"}}'.encode(),
        "resources-read": b'{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}',
    }
    requests = {f"body-{name}": b"\n\n" + body for name, body in bodies.items()}
    requests["headers-tools-call"] = b"tools/call\nwhoami\n" + bodies["tools-call"]
    requests["headers-base64-name"] = b"tools/call\n=?base64?w6ljaG8=?=\n" + bodies["tools-call"].replace(b"whoami", "écho".encode())
    requests["headers-mismatch"] = b"tools/list\n\n" + bodies["tools-call"]
    write("mcp_request", requests)


def write(target: str, seeds: dict[str, bytes]) -> None:
    directory = HERE / "seeds" / target
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for name, data in seeds.items():
        (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
