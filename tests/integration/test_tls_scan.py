"""test_tls_scan.py — an outside scanner's view of the HTTPS listener.

sslscan (Debian) connects the way scanners on the internet do and lists
protocols, ciphers, key exchange groups, renegotiation, compression,
Heartbleed and the certificate. What a public box must show: TLS 1.2 and
1.3 only, forward-secret AEAD ciphers of 128 bits or more, no
renegotiation, no TLS compression, not vulnerable to Heartbleed, a key of
at least 128 bits of strength. And the web page itself is not served
compressed (BREACH), whatever the client offers.
"""

import re
import shutil
import subprocess

from harness import Skip, check, eq


def _scan(pvd):
    if not shutil.which("sslscan"):
        raise Skip("sslscan is not installed (sh tools/deps.sh test)")
    out = subprocess.run(["sslscan", "--no-colour", "127.0.0.1:%d" % pvd.https_port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return out.stdout.decode("utf-8", "replace")


def test_protocols_ciphers_and_certificate(pvd):
    text = _scan(pvd)
    for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        check(re.search(r"^%s\s+disabled" % re.escape(proto), text, re.M), proto + " is disabled",
              "disabled", re.findall(r"^%s.*$" % re.escape(proto), text, re.M))
    for proto in ("TLSv1.2", "TLSv1.3"):
        check(re.search(r"^%s\s+enabled" % re.escape(proto), text, re.M), proto + " is enabled",
              "enabled", re.findall(r"^%s.*$" % re.escape(proto), text, re.M))
    ciphers = re.findall(r"^(Preferred|Accepted)\s+(TLSv1\.[23])\s+(\d+) bits\s+(\S+)", text, re.M)
    check(ciphers, "sslscan lists the accepted ciphers", "some", text[-800:])
    for _, proto, bits, name in ciphers:
        check(int(bits) >= 128, "%s %s strength" % (proto, name), ">= 128 bits", bits)
        weak = re.search(r"CBC|RC4|DES|NULL|EXP|MD5|anon|SHA$", name) and proto == "TLSv1.2"
        check(not weak, "%s %s is an AEAD, forward-secret cipher" % (proto, name), "GCM/CHACHA20", name)
        if proto == "TLSv1.2":
            check(name.startswith("ECDHE-"), "%s: forward secrecy" % name, "ECDHE", name)
    check("Session renegotiation not supported" in text or "Insecure session renegotiation" not in text,
          "no insecure renegotiation", "not supported", re.findall(r"renegotiation.*", text))
    check("Compression enabled" not in text, "no TLS compression", "disabled", "enabled")
    check("vulnerable to heartbleed" in text and " VULNERABLE" not in text.replace("not vulnerable", ""),
          "not vulnerable to Heartbleed", "not vulnerable", re.findall(r".*heartbleed.*", text, re.I))
    m = re.search(r"(ECC|RSA) Key Strength:\s+(\d+)", text)
    check(m and int(m.group(2)) >= 128, "certificate key strength", ">= 128", m and m.group(0))


def test_web_page_not_compressed(pvd):
    r = pvd.req("GET", "/", headers={"Accept-Encoding": "gzip, deflate, br"})
    r.expect(200, "the web page")
    eq(r.header("Content-Encoding"), None, "the HTML page is never compressed (BREACH)")
