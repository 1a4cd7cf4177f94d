"""The printed table of `lab bench` (`lab.bench.step.run_bench`'s dict as text): the matmul peak and its
readings, a row per (model, dtype) with every FLOP convention and MFU, the formulas, the compiled
programs and the dtype comparison."""

from __future__ import annotations

from lab.bench.step import CONVENTIONS


def drift_note(matmul: dict, tolerance: float = 1.2) -> str | None:
    """A warning line when one dtype's peak readings differ by more than `tolerance`×: the machine's
    speed moved during the run (other jobs, a shared VM), so rows are not comparable across runs."""
    readings = matmul.get("readings_flops_per_s") or []
    if len(readings) < 2 or max(readings) <= tolerance * min(readings):
        return None
    return (
        f"  ! {matmul['dtype']} matmul rate moved ×{max(readings) / min(readings):.2f} during this run: the "
        "machine's speed drifted; MFU uses the best reading, and only ratios within one run compare"
    )


def si(x: float, unit: str = "FLOP/s") -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.1f} {prefix}{unit}"
    return f"{x:.1f} {unit}"


def program_lines(rows: list[dict]) -> list[str]:
    """The compiled programs: micro-batches, remat, attention, XLA's memory analysis per device."""
    mib = lambda n: f"{n / 2**20:,.1f}" if n is not None else "-"
    lines = [
        "",
        "Compiled step (XLA memory analysis, MiB per device; K = train.microbatches):",
        f"  {'model':<8} {'dtype':<9} {'K':>3} {'remat':<12} {'attention':<14} {'window':>6}"
        f" {'temp':>10} {'arguments':>10} {'compile':>8}",
    ]
    for r in rows:
        attn = (
            r["attn_impl"]
            if r["attn_impl"] == r["attn_impl_resolved"]
            else f"{r['attn_impl']}->{r['attn_impl_resolved']}"
        )
        lines.append(
            f"  {r['model']:<8} {r['dtype']:<9} {r['microbatches']:>3} {r['remat']:<12} {attn:<14}"
            f" {r['attn_window'] or '-':>6} {mib(r['temp_bytes']):>10} {mib(r['argument_bytes']):>10}"
            f" {r['compile_s']:>7.1f}s"
        )
    return lines


def header_lines(h: dict) -> list[str]:
    """Who ran where: date, platform, devices, the CPU or GPU, and the library versions."""
    where = h["gpu_name"] or f"{h['cpu_model']} ({h['cpu_count']} cores visible)"
    return [
        f"lab bench · {h['date']} · {h['platform']} × {h['device_count']} ({h['device_kind']}) · {where}",
        f"jax {h['jax']} · jaxlib {h['jaxlib']} · flax {h['flax']}",
    ]


def matmul_lines(matmul: list[dict], nominal: dict | None) -> list[str]:
    """The measured matmul peak per dtype with its readings and drift warnings, then the nominal peak."""
    lines = [
        "Matmul peak = 2·N³ / best time of an N×N jnp.dot (after warm-up), over readings before and after "
        "each model:",
    ]
    for m in matmul:
        spread = ", ".join(f"{x / 1e9:.0f}" for x in m.get("readings_flops_per_s", []))
        lines.append(
            f"  {m['dtype']:<9} N={m['n']:<6} best {1e3 * m['best_s']:8.2f} ms  {si(m['flops_per_s']):>16}"
            f"  (best of {m['repeats']}; readings {spread} GFLOP/s)"
        )
        lines += [note for note in [drift_note(m)] if note]
    lines.append(
        f"  nominal: {si(nominal['flops_per_s'])} bf16 dense — {nominal['source']}"
        if nominal
        else "  nominal: none known for this device; MFU uses the measured peak only"
    )
    return lines


def step_table_lines(steps: list[dict], nominal: dict | None) -> list[str]:
    """The training-step table: a row per (model, dtype) with timings, every FLOP convention and MFU."""
    lines = ["Training step (lab.training.step.compile_step on random tokens; data loading not timed):"]
    head = (
        f"  {'model':<8} {'dtype':<9} {'params':>9} {'tok/step':>8} {'compile':>8} {'step':>9} {'tok/s':>9}"
        f" {'exact':>11} {'6N':>11} {'6N_total':>11} {'deepseek':>11} {'MFU':>6}"
        + (f" {'MFU_nom':>7}" if nominal else "")
        + f" {'attn':>5}"
    )
    lines += [head, "  " + "-" * (len(head) - 2)]
    for r in steps:
        f = r["flops_per_s"]
        lines.append(
            f"  {r['model']:<8} {r['dtype']:<9} {r['costs']['params_total']:>9,} {r['tokens_per_step']:>8,}"
            f" {r['compile_s']:>7.1f}s {r['step_ms']:>7.1f}ms {r['tokens_per_s']:>9,.0f}"
            + "".join(f" {si(f[k], 'F/s'):>11}" for k in CONVENTIONS)
            + f" {r['mfu_measured']:>6.3f}"
            + (f" {r['mfu_nominal']:>7.4f}" if nominal else "")
            + f" {100 * r['attention_flop_share']:>4.1f}%"
        )
    return lines


def legend_lines(r0: dict, nominal: dict | None) -> list[str]:
    """What the step table's columns mean: the timing, each FLOP convention, MFU and the attention share."""
    lines = [
        "  compile = lowering + XLA compile of the step (persistent compilation cache off)",
        f"  step = mean of {r0['timed_steps']} consecutive steps after {r0['warmup_steps']} warm-up; "
        "tok/s = batch·seq_len / step; FLOP/s = FLOPs/token × tok/s, per convention:",
        "    exact    = 3 × every forward matmul (QKV/O, QKᵀ and AV over the full T×T square — not halved "
        "for causality —, MLP, head)",
        "    6N       = 6 · non-embedding params;  6N_total = 6 · all params;  deepseek = 72·L·D² + 12·L·D·T",
        "  MFU     = exact FLOP/s ÷ measured matmul peak of the row's dtype (table above)",
    ]
    if nominal:
        lines.append(
            f"  MFU_nom = exact FLOP/s ÷ {si(nominal['flops_per_s'])} (nominal bf16 dense, {nominal['source']})"
        )
    lines.append(
        "  attn    = flops_attention / flops_exact: a share of FLOPs, not of time (CPU attention takes "
        "a larger share of time)"
    )
    return lines


def dtype_comparison_lines(comparison: list[dict], r0: dict) -> list[str]:
    """Tokens/s of float32 against bfloat16 compute per model (empty when only one dtype ran)."""
    if not comparison:
        return []
    lines = [
        "",
        f"dtype comparison (tokens/s; model.dtype is the compute dtype, params in {r0['param_dtype']}):",
        f"  {'model':<8} {'float32':>10} {'bfloat16':>10} {'bf16/f32':>9}",
    ]
    for c in comparison:
        lines.append(
            f"  {c['model']:<8} {c['float32_tokens_per_s']:>10,.0f} {c['bfloat16_tokens_per_s']:>10,.0f}"
            f" {c['bf16_over_f32']:>8.2f}×"
        )
    return lines


def format_report(res: dict) -> str:
    nominal, steps = res["nominal_peak"], res["steps"]
    lines = header_lines(res["header"]) + [""] + matmul_lines(res["matmul"], nominal)
    lines += [""] + step_table_lines(steps, nominal)
    lines += [""] + legend_lines(steps[0], nominal)
    lines += program_lines(steps)
    lines += dtype_comparison_lines(res["dtype_comparison"], steps[0])
    return "\n".join(lines)
