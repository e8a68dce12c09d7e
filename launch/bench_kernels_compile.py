"""``python -m launch.bench_kernels --compile-only``: compile every Triton kernel variant for a
GPU target on a machine without one, report registers / spills per thread and shared
memory, and with ``--dump-dir`` write each variant's TTGIR, PTX and SASS (to diff two
versions of a kernel, e.g. before and after a refactor: equal SASS means equal code)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import tempfile
import time

__all__ = ["kernel_specs", "compile_only"]


def kernel_specs(ops, d: int) -> list:
    """The variants of every Triton kernel of ``ops`` as the launchers pick them at head size ``d``."""
    from agents.kernels.delta_rnn import triton_kernel as delta_rnn_kernels
    from agents.kernels.delta_rule import triton_kernel as delta_kernels      # delta, gated, linear
    from agents.kernels.rec_delta import triton_kernel as rec_delta_kernels
    from agents.kernels.srwm import triton_kernel as srwm_kernels
    return [spec for module in (delta_kernels, srwm_kernels, rec_delta_kernels, delta_rnn_kernels)
            for spec in module.compile_specs(d)
            if spec.label.split()[0] in ops]                # the label starts with the --ops name


def compile_only(args) -> None:
    """Compile each kernel variant for sm_<arch> (no GPU needed) and report resources; with
    ``--dump-dir`` also write every variant's TTGIR, PTX and SASS there."""
    import triton
    from triton.backends.compiler import GPUTarget

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    target = GPUTarget("cuda", args.arch, 32)
    ints = {"T", "B", "H", "C", "NC"}
    table = None
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
        table = open(os.path.join(args.dump_dir, "resources.csv"), "w", newline="")
        writer = csv.DictWriter(table, fieldnames=("label", "file", "warps", "regs", "spill", "shared"))
        writer.writeheader()

    def compile_one(fn, consts, num_warps) -> tuple:
        sig = {a: "constexpr" if a in consts else "i32" if a in ints else "*u8" if a == "reset_ptr" else "*fp32"
               for a in fn.arg_names}
        t0 = time.perf_counter()
        k = triton.compile(triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts),
                           target=target, options={"num_warps": num_warps})
        res = {"seconds": time.perf_counter() - t0, "shared": k.metadata.shared, "regs": "?", "spill": "?"}
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
            sass = (subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True).stdout
                    if args.dump_dir else "")
        m = re.search(r"REG:(\d+).*?STACK:(\d+).*?LOCAL:(\d+)", usage)
        if m:
            res["regs"], res["spill"] = m.group(1), f"{m.group(2)}/{m.group(3)}"
        return res, k, sass

    print(f"Compiling for sm_{args.arch} (registers per thread; stack/local bytes = spills)")
    print(f"{'kernel':<26} {'warps':>5} {'regs':>5} {'spill':>8} {'smem':>6} {'compile_s':>9}")
    for D in args.head_sizes:
        for spec in kernel_specs(args.ops, D):
            r, k, sass = compile_one(spec.fn, spec.constexprs, spec.num_warps)
            print(f"{spec.label:<26} {spec.num_warps:>5} {r['regs']:>5} {r['spill']:>8} {r['shared']:>6} "
                  f"{r['seconds']:>9.1f}", flush=True)
            if args.dump_dir:
                name = re.sub(r"[^A-Za-z0-9]+", "_", spec.label.replace("=", "")).strip("_")
                for ext, text in (("ttgir", k.asm["ttgir"]), ("ptx", k.asm["ptx"]), ("sass", sass)):
                    with open(os.path.join(args.dump_dir, f"{name}.{ext}"), "w") as f:
                        f.write(text)
                writer.writerow(dict(label=spec.label, file=name, warps=spec.num_warps, regs=r["regs"],
                                     spill=r["spill"], shared=r["shared"]))
                table.flush()                    # a long sweep can be stopped and still compared
    if table:
        table.close()
        print(f"wrote the TTGIR, PTX and SASS of each variant to {args.dump_dir}")
