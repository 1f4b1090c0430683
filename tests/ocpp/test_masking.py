"""Card ids masked in raw OCPP frames (apps/ocpp/masking.py, pure: no database)."""

from __future__ import annotations

import json
import random

from apps.ocpp.masking import MASK, mask_frame, mask_id_tag

TAG = "04A1B2C3D4"
MASKED = "****C3D4"


def test_a_tag_keeps_only_its_last_four_and_short_or_odd_tags_nothing():
    assert mask_id_tag(TAG) == MASKED
    assert mask_id_tag("ABCDEFGH") == "****EFGH"
    assert mask_id_tag("0B0B0B0") == MASK  # seven characters: four would give most of it away
    assert mask_id_tag("") == MASK
    assert mask_id_tag('ABCDEFG\\"') == MASK  # a tail that is not plain letters and digits
    assert mask_id_tag("A" * 20) == mask_id_tag("B" * 8).replace("B", "A")  # the length is not shown


def test_every_message_that_carries_a_tag():
    frames = {
        f'[2,"1","Authorize",{{"idTag":"{TAG}"}}]': f'[2,"1","Authorize",{{"idTag":"{MASKED}"}}]',
        '[3,"1",{"idTagInfo":{"status":"Accepted","parentIdTag":"PARENT0042"}}]':
            '[3,"1",{"idTagInfo":{"status":"Accepted","parentIdTag":"****0042"}}]',
        f'[2,"2","StartTransaction",{{"connectorId":1,"idTag":"{TAG}","meterStart":0,'
        f'"timestamp":"2026-03-10T08:00:00Z"}}]':
            f'[2,"2","StartTransaction",{{"connectorId":1,"idTag":"{MASKED}","meterStart":0,'
            f'"timestamp":"2026-03-10T08:00:00Z"}}]',
        f'[2,"3","StopTransaction",{{"transactionId":7,"idTag":"{TAG}","meterStop":10,"timestamp":"t",'
        f'"transactionData":[{{"timestamp":"t","sampledValue":[{{"value":"10","idTag":"{TAG}"}}]}}]}}]':
            f'[2,"3","StopTransaction",{{"transactionId":7,"idTag":"{MASKED}","meterStop":10,"timestamp":"t",'
            f'"transactionData":[{{"timestamp":"t","sampledValue":[{{"value":"10","idTag":"{MASKED}"}}]}}]}}]',
        f'[2,"4","SendLocalList",{{"listVersion":3,"updateType":"Full","localAuthorizationList":['
        f'{{"idTag":"{TAG}","idTagInfo":{{"status":"Accepted","parentIdTag":"PARENT0042"}}}},'
        f'{{"idTag":"0B0B0B0B"}}]}}]':
            f'[2,"4","SendLocalList",{{"listVersion":3,"updateType":"Full","localAuthorizationList":['
            f'{{"idTag":"{MASKED}","idTagInfo":{{"status":"Accepted","parentIdTag":"****0042"}}}},'
            f'{{"idTag":"****0B0B"}}]}}]',
        f'[2,"5","RemoteStartTransaction",{{"idTag":"{TAG}","connectorId":1}}]':
            f'[2,"5","RemoteStartTransaction",{{"idTag":"{MASKED}","connectorId":1}}]',
        f'[2,"6","ReserveNow",{{"connectorId":1,"expiryDate":"x","idTag":"{TAG}","parentIdTag":"PARENT0042",'
        f'"reservationId":5}}]':
            f'[2,"6","ReserveNow",{{"connectorId":1,"expiryDate":"x","idTag":"{MASKED}","parentIdTag":"****0042",'
            f'"reservationId":5}}]',
    }
    for raw, expected in frames.items():
        assert mask_frame(raw) == expected, raw


def test_frames_without_a_tag_come_back_byte_for_byte():
    for raw in ('[2, "a", "Heartbeat", {}]', '[3,"a",{"currentTime":"2026-03-10T08:00:01Z"}]', "[]", "",
                '=HYPERLINK("x")', '[2,"b","MeterValues",{"connectorId":1,"meterValue":[{"sampledValue":'
                '[{"value":"1.10"}],"timestamp":"t"}]}]', '[2,"c","DataTransfer",{"vendorId":"é","data":"x"}]'):
        assert mask_frame(raw) == raw


def test_wrong_types_under_a_tag_key_and_any_spelling_of_the_key():
    assert json.loads(mask_frame('[2,"1","Authorize",{"idTag":1234567890}]'))[3] == {"idTag": "****7890"}
    nested = json.loads(mask_frame(f'[2,"1","Authorize",{{"idTag":{{"uid":"{TAG}","n":[12345678]}}}}]'))
    assert nested[3] == {"idTag": {"uid": MASKED, "n": ["****5678"]}}
    assert json.loads(mask_frame(f'[2,"1","Authorize",{{"IDTAG":"{TAG}"}}]'))[3] == {"IDTAG": MASKED}
    # A key spelt with escapes is still the key once read.
    assert json.loads(mask_frame(f'[2,"1","Authorize",{{"\\u0069dTag":"{TAG}"}}]'))[3] == {"idTag": MASKED}
    assert mask_frame('[2,"1","Authorize",{"idTag":null}]') == '[2,"1","Authorize",{"idTag":null}]'


def test_malformed_frames_are_masked_by_the_text():
    cases = {
        f'[2,"1","Authorize",{{"idTag":"{TAG}"}}': f'[2,"1","Authorize",{{"idTag":"{MASKED}"}}',  # no closing ]
        f'[2,"1","Authorize",{{"idTag" : "{TAG}': f'[2,"1","Authorize",{{"idTag" : "{MASKED}"',  # cut off
        f'[2,"1","Authorize",{{"idTag":"{TAG}",}}]': f'[2,"1","Authorize",{{"idTag":"{MASKED}",}}]',  # trailing ,
        f"[2,'1',{{\"parentIdTag\":\"PARENT0042\", \"idTag\": {TAG}}}": (
            f"[2,'1',{{\"parentIdTag\":\"****0042\", \"idTag\": \"{MASK}\"}}"),  # a bare value
        '[2,"1","Authorize",{"IdTag":"AB\\"CDEFGHIJ"}': '[2,"1","Authorize",{"IdTag":"****GHIJ"}',
        f'[2,"1","DataTransfer",{{"data":"{{\\"idTag\\":\\"{TAG}\\"}}"': (
            f'[2,"1","DataTransfer",{{"data":"{{\\"idTag\\":\\"{MASKED}\\"}}"'),  # escaped once, inside a string
    }
    for raw, expected in cases.items():
        assert mask_frame(raw) == expected, raw


def test_json_inside_a_string_and_quoted_values_in_errors():
    data = json.dumps({"idTag": TAG, "note": "x"})
    raw = json.dumps([2, "1", "DataTransfer", {"vendorId": "V", "data": data}], separators=(",", ":"))
    inner = json.loads(json.loads(mask_frame(raw))[3]["data"])
    assert inner == {"idTag": MASKED, "note": "x"}
    error = ('[4,"1","TypeConstraintViolation","Payload for Action is syntactically correct",'
             f'{{"cause":"\'{TAG}XXXXXXXXXXXXXXXX\' is too long"}}]')
    masked = mask_frame(error)
    assert TAG not in masked and json.loads(masked)[4] == {"cause": "'****XXXX' is too long"}


def test_an_escaped_surrogate_stays_escaped():
    raw = f'[2,"1","Authorize",{{"idTag":"{TAG}","x":"\\ud800"}}]'
    masked = mask_frame(raw)
    masked.encode("utf-8")  # would raise if the surrogate had been written out raw
    assert json.loads(masked)[3]["idTag"] == MASKED


def test_the_hidden_part_never_shows_however_the_frame_is_cut():
    """2,000 seeded cases: tags of 8-20 characters under any tag key, at any depth, the frame whole or cut."""
    rng = random.Random(20261129)
    for _ in range(2000):
        tag = "".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randint(8, 20)))
        payload: object = {rng.choice(["idTag", "parentIdTag", "IdTag"]): tag}
        for _ in range(rng.randint(0, 4)):
            payload = {"wrapper": [payload]}
        raw = json.dumps([2, "u", "Authorize", payload])
        if rng.random() < 0.7:
            raw = raw[: rng.randint(0, len(raw))]
        masked = mask_frame(raw)
        assert tag[:-4] not in masked.replace(MASK + tag[-4:], MASK), raw
