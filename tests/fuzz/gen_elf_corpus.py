#!/usr/bin/env python3
"""Write the seed corpus of fuzz_elf: one small valid microguest and
variants that each break one rule of core/elf.c.

    tests/fuzz/gen_elf_corpus.py [OUTDIR]   (default: corpus/elf next to it)

The output is committed; rerun only to change the seeds. Files not written
by this script (minimised findings) are left alone.
"""
import os
import struct
import sys

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP, PT_NOTE, PT_GNU_STACK = 1, 3, 4, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
BASE = 0x400000

# rax = hcall page of this vCPU; exit(0) through the doorbell; spin.
CODE = bytes.fromhex(
    "4889f8" "48c1e00c" "480500000100" "48c70002000000"
    "48c7400800000000" "e6f5" "ebfe")


class Image:
    def __init__(self):
        self.ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        self.type, self.machine, self.version = 2, 62, 1
        self.phoff, self.phentsize = EHDR.size, PHDR.size
        self.phnum = None          # None: len(self.ph)
        code_off = EHDR.size + 3 * PHDR.size
        data_off = code_off + len(CODE)
        self.entry = BASE + code_off
        # [type, flags, offset, vaddr, filesz, memsz]
        self.ph = [
            [PT_LOAD, PF_R | PF_X, 0, BASE, data_off, data_off],
            [PT_LOAD, PF_R | PF_W, data_off, 0x401000, 8, 0x1000],
            [PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0],
        ]
        self.payload = CODE + struct.pack("<Q", 0x1122334455667788)

    def bytes(self):
        phnum = len(self.ph) if self.phnum is None else self.phnum
        out = EHDR.pack(self.ident, self.type, self.machine, self.version,
                        self.entry, self.phoff, 0, 0, EHDR.size,
                        self.phentsize, phnum, 0, 0, 0)
        for t, f, off, va, fsz, msz in self.ph:
            out += PHDR.pack(t, f, off, va, va, fsz, msz, 0x1000)
        # Extra program headers push the payload; keep offsets honest.
        pad = EHDR.size + 3 * PHDR.size - len(out)
        return out + bytes(max(pad, 0)) + self.payload


def variants():
    v = {}

    def mk(name, fn=None):
        img = Image()
        if fn:
            fn(img)
        v[name] = img.bytes()

    def setph(i, k, val):
        return lambda img: img.ph[i].__setitem__(k, val)

    def ident(i, val):
        def f(img):
            b = bytearray(img.ident)
            b[i] = val
            img.ident = bytes(b)
        return f

    mk("valid")
    mk("valid_pure_bss", setph(2, slice(0, 6),
                               [PT_LOAD, PF_R | PF_W, 0, 0x402000, 0, 0x3000]))
    mk("bad_magic", ident(3, ord("G")))
    mk("class32", ident(4, 1))
    mk("big_endian", ident(5, 2))
    mk("ident_version0", ident(6, 0))
    mk("type_dyn", lambda img: setattr(img, "type", 3))
    mk("machine_386", lambda img: setattr(img, "machine", 3))
    mk("phentsize32", lambda img: setattr(img, "phentsize", 32))
    mk("phnum0", lambda img: setattr(img, "phnum", 0))
    mk("phnum1000", lambda img: setattr(img, "phnum", 1000))
    mk("phoff_overflow", lambda img: setattr(img, "phoff", 2**64 - 16))
    mk("filesz_gt_memsz", setph(1, 5, 4))
    mk("offset_overflow", setph(1, 2, 2**64 - 4))
    mk("offset_beyond_file", setph(1, 2, 0x1000))
    mk("vaddr_overflow", setph(1, 3, 2**64 - 0x800))
    mk("below_window", setph(1, 3, 0x3000))
    mk("beyond_memory", setph(1, 5, 64 << 20))
    mk("memsz_2p63", setph(1, 5, 2**63))
    mk("overlap", setph(1, 3, BASE + 0x80))
    mk("no_load", lambda img: [p.__setitem__(0, PT_NOTE) for p in img.ph])
    mk("entry_outside", lambda img: setattr(img, "entry", 0x800000))
    mk("entry_in_data", lambda img: setattr(img, "entry", 0x401004))
    mk("interp", setph(2, slice(0, 6), [PT_INTERP, PF_R, 0x40, 0, 0x1c, 0x1c]))
    mk("loads17", lambda img: img.ph.extend(
        [PT_LOAD, PF_R, 0, 0x500000 + i * 0x1000, 0, 0x1000]
        for i in range(15)))
    full = v["valid"]
    v["truncated_ehdr"] = full[:40]
    v["truncated_phdrs"] = full[:EHDR.size + PHDR.size + 7]
    v["truncated_segment"] = full[:-3]
    return v


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "elf")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(variants().items()):
        with open(os.path.join(out, name + ".elf"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
