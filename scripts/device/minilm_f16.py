# all-MiniLM-L6-v2 model.safetensors (F32) -> F16 copy, to fit the device tool's 64 MiB carry.
# Usage: python3 minilm_f16.py SRC DST
import json, struct, sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); data = b[8+n:]
out = {}; chunks = []; off = 0
for k, v in h.items():
    if k == '__metadata__': out[k] = v; continue
    s, e = v['data_offsets']
    a = np.frombuffer(data[s:e], dtype=np.float32 if v['dtype']=='F32' else None)
    if v['dtype'] == 'F32':
        a = a.astype(np.float16); dt = 'F16'
    else:
        a = np.frombuffer(data[s:e], dtype=np.uint8); dt = v['dtype']
    raw = a.tobytes(); out[k] = {'dtype': dt, 'shape': v['shape'], 'data_offsets': [off, off+len(raw)]}
    chunks.append(raw); off += len(raw)
hj = json.dumps(out).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(hj))); f.write(hj); [f.write(c) for c in chunks]
