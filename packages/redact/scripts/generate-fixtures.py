#!/usr/bin/env python3
"""Generates test/fixtures/pii.jsonl: a labelled set of texts with the personal data each holds.

Positives are built from templates with values made valid by construction (Luhn check digits, ISO 7064
checksums, real octet ranges); negatives are look-alikes (a wrong checksum, an invalid Luhn, versions,
dates, times, MAC addresses, order numbers) labelled with nothing. Deterministic (seeded): rerun to
regenerate the same file.
"""
import json, random

random.seed(20261124)
examples = []

def add(text, *expected):
    examples.append({"text": text, "expected": [{"kind": k, "value": v} for k, v in expected]})

# --- emails
users = ["alice", "bob.smith", "li.wei", "x_y-z", "j.doe+news", "ops-team", "zhang.san", "maria.garcia", "t1000", "dev"]
domains = ["example.com", "mail.example.org", "company.co.uk", "163.com", "qq.com", "uni.edu", "sub.domain.io", "example.cn"]
email_templates = ["Contact me at {} for details.", "Send the invoice to {}", "{} wrote: hello", "邮箱：{}，请回复", "cc: {}; thanks"]
for i in range(40):
    e = f"{random.choice(users)}{random.randint(0, 99) if i % 3 == 0 else ''}@{random.choice(domains)}"
    add(random.choice(email_templates).format(e), ("email", e))
for t in ["Write to user@localhost for help", "name at example dot com", "follow @handle on social", "a@b is not an address",
          "price @ 5 dollars each", "the ratio was 3@4", "email: none given", "use the @ sign carefully"]:
    add(t)

# --- phones
def cn_mobile():
    return "1" + random.choice("3456789") + "".join(random.choice("0123456789") for _ in range(9))
phone_templates = ["Call {} tomorrow.", "手机：{}", "My number is {}.", "Reach the desk on {} anytime", "tel {}"]
for i in range(40):
    m = cn_mobile()
    style = i % 5
    if style == 0: v = m
    elif style == 1: v = f"+86 {m}"
    elif style == 2: v = f"{m[:3]}-{m[3:7]}-{m[7:]}"
    elif style == 3: v = f"0{random.choice(['10', '21', '755', '571'])}-{random.randint(1000000, 99999999)}"
    else: v = random.choice([f"+1 415-555-{random.randint(1000, 9999)}", f"+44 20 7946 {random.randint(1000, 9999)}", f"+49 30 {random.randint(100000, 999999)}", f"(212) 555-{random.randint(1000, 9999)}"])
    add(random.choice(phone_templates).format(v), ("phone", v))
for t in ["The meeting is on 2024-01-15 at 10:30", "Order #12345678 has shipped", "It costs 1,234,567 yuan", "Build 20240115 passed",
          "Room 1201, floor 12", "ISBN 978-3-16-148410-0", "version 12.3.4", "The year 1999 was long", "Call extension 1234", "pi is 3.14159265"]:
    add(t)

# --- Chinese resident ID numbers (ISO 7064 MOD 11-2)
weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
checks = "10X98765432"
def cn_id(valid=True):
    area = random.choice(["110101", "310104", "440305", "330106", "510107", "420111"])
    year = random.randint(1950, 2005); month = random.randint(1, 12); day = random.randint(1, 28)
    body = f"{area}{year:04d}{month:02d}{day:02d}{random.randint(0, 999):03d}"
    check = checks[sum(int(d) * w for d, w in zip(body, weights)) % 11]
    if not valid:
        check = random.choice([c for c in checks if c != check])
    return body + check
id_templates = ["身份证号：{}", "ID number {} on file", "Applicant ID: {}.", "证件号码 {} 已核验", "her id is {}"]
for i in range(40):
    v = cn_id()
    add(random.choice(id_templates).format(v), ("cn_id", v))
for i in range(20):
    add(random.choice(id_templates).format(cn_id(valid=False)))

# --- bank cards (Luhn)
def luhn_digit(partial):
    total = 0
    for i, d in enumerate(reversed(partial)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            if n > 9: n -= 9
        total += n
    return str((10 - total % 10) % 10)
def card(valid=True, length=16):
    prefix = random.choice(["4", "51", "55", "62", "37"])
    body = prefix + "".join(random.choice("0123456789") for _ in range(length - len(prefix) - 1))
    d = luhn_digit(body)
    if not valid:
        d = str((int(d) + random.randint(1, 9)) % 10)
    return body + d
card_templates = ["Card: {}", "卡号 {} 已绑定", "Charge it to {} please", "payment card {} expires soon", "use {} for the deposit"]
for i in range(40):
    c = card(length=random.choice([16, 16, 16, 19, 15]))
    v = " ".join(c[j:j + 4] for j in range(0, len(c), 4)) if i % 3 == 0 else c
    add(random.choice(card_templates).format(v), ("bank_card", v))
for i in range(20):
    add(random.choice(card_templates).format(card(valid=False)))

# --- IPv4
ip_templates = ["Connect to {} on port 22", "服务器地址 {}", "Blocked {} after five attempts", "ping {}", "the gateway at {} is down"]
for i in range(30):
    v = f"{random.randint(1, 223)}.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    add(random.choice(ip_templates).format(v), ("ipv4", v))
for t in ["Upgrade to v1.2.3.4 today", "version 10.0.0.1 of the SDK", "256.100.50.25 is not an address", "1.2.3.4.5 is a dotted list",
          "Section 3.1.4.1 explains it", "the score was 1.2.3", "release 2.0.1 ships friday", "coordinates 12.34.56"]:
    add(t)

# --- IPv6
ipv6_values = ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::1", "2606:4700:4700::1111",
               "fd00:1234:5678::42", "2a00:1450:4001:82a::200e", "2001:db8:0:1::ab9:c0a8:102", "fe80::a00:27ff:fe4e:66a1", "2001:4860:4860::8888"]
for i in range(20):
    v = ipv6_values[i % len(ipv6_values)]
    add(random.choice(ip_templates).format(v), ("ipv6", v))
for t in ["the alarm rang at 10:30:45", "MAC 00:1A:2B:3C:4D:5E is listed", "ratio 3:4:5 holds", "scripture 3:16 is quoted", "time 12:00 noon"]:
    add(t)

# --- API keys and bearer tokens
def rand(n, alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"):
    return "".join(random.choice(alphabet) for _ in range(n))
key_templates = ["export OPENAI_API_KEY={}", "my key is {} do not share", "config: key={}", "令牌 {} 泄露了", "token={}"]
for i in range(30):
    kind = i % 6
    if kind == 0: v = "sk-" + rand(40)
    elif kind == 1: v = "sk-proj-" + rand(48)
    elif kind == 2: v = "AKIA" + rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    elif kind == 3: v = "ghp_" + rand(36)
    elif kind == 4: v = "xoxb-" + rand(12, "0123456789") + "-" + rand(24)
    else: v = "AIza" + rand(35)
    add(random.choice(key_templates).format(v), ("api_key", v))
for i in range(10):
    tok = rand(32)
    add(f"Authorization: Bearer {tok}", ("api_key", f"Bearer {tok}"))
for t in ["the task-force met", "a skeleton-key opens it", "sk-short is too short", "ask-me-anything session", "AKIA is a prefix",
          "the bearer of bad news", "ghp_ alone is nothing", "risk-assessment-report-2024 is ready"]:
    add(t)

# --- mixed
for i in range(10):
    e = f"{random.choice(users)}@{random.choice(domains)}"; m = cn_mobile()
    add(f"Reach {e} or call {m}; id {cn_id()}"[:0] + f"Reach {e} or call {m}.", ("email", e), ("phone", m))

seen = set()
unique = []
for ex in examples:
    if ex["text"] not in seen:
        seen.add(ex["text"])
        unique.append(ex)
examples = unique

with open("test/fixtures/pii.jsonl", "w") as f:
    for ex in examples:
        f.write(json.dumps(ex, ensure_ascii=False) + "\n")
print(len(examples), "examples")
