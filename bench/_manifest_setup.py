"""The set-up the manifest benchmarks' children share, as program text
(a child runs in the tree it measures, which need not hold this module).

``MANIFEST_UP_TO_A_CHECKPOINT`` expects ``store``, ``streams``,
``per_stream`` and ``EVERY`` (the checkpoint interval) to be defined, and
the names of ``IMPORTS`` imported; it writes a manifest of ``streams``
streams and ``per_stream`` objects a stream (each holding one range of one
stream, with its chain links) and commits on to the next checkpoint, as a
writer that has run a while has written one. It leaves ``manifest``,
``ids``, ``object_id`` (the next free one) and the makers ``links`` and
``object_of`` defined.
"""

IMPORTS = r"""
from s3stream.chain import ChainHash, RangeLinks
from s3stream.manifest import Manifest
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.objects import ObjectKind
from s3stream.store.memory import MemoryStore
"""

MANIFEST_UP_TO_A_CHECKPOINT = r"""
random = __import__("random").Random(7)
def links():
    return RangeLinks(ChainHash.SHA256, random.randbytes(32), random.randbytes(32))

def object_of(object_id, ranges):
    return ObjectMeta(object_id, f"o/{object_id}", ObjectKind.STREAM_SET, 4096, 0, tuple(ranges))

manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=True)
first = manifest.state.next_stream_id
ids = list(range(first, first + streams))
manifest.commit([op for s in ids for op in (["create_stream", s, 0], ["open_stream", s, 1])])
object_id = manifest.state.next_object_id
ops = []
for k in range(per_stream):
    for s in ids:
        ranges = [RangeMeta(s, k * 10, k * 10 + 10, 4096, links())]
        ops.append(["add_object", object_of(object_id, ranges).to_wire()])
        object_id += 1
manifest.commit(ops)
while manifest.state.seq % EVERY:
    manifest.commit([["trim", ids[0], 0]])
manifest.join_cleanup()
"""
