"""Runs ministack with one fidelity fix: S3 event notifications carry the object key
URL-encoded, as real S3 sends it.

Real S3 puts `inbox/sandbox/my+dir/my+file%2B%281%29.jsonl` in the event for the key
`inbox/sandbox/my dir/my file+(1).jsonl` (form encoding: a space is `+`, a `+` is `%2B`), and
batchdrop decodes it so. ministack 1.4.21 sends the key raw, so a `+` in a key would come out
as a space. This wrapper encodes the key before ministack matches the notification filters
(prefixes and suffixes are unchanged by the encoding) and delivers the event; everything else
is ministack as published. Usage: the same environment as `ministack` (GATEWAY_PORT, ...).
"""

import sys
import urllib.parse

from ministack.services import s3

_deliver = s3._fire_s3_event


def _deliver_with_encoded_key(bucket_name, key, *args, **kwargs):
    return _deliver(bucket_name, urllib.parse.quote_plus(key, safe="/"), *args, **kwargs)


s3._fire_s3_event = _deliver_with_encoded_key

if __name__ == "__main__":
    from ministack.app import main

    sys.argv = [sys.argv[0]]
    main()
