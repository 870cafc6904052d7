"""Which ranks run which guidance rows: ``world`` ranks form ``groups`` equal groups; group g runs its
share of the batch rows (the 2-3 guidance branches of a step) with sequence parallelism over its
``world / groups`` ranks. More groups means less communication, so rows are spread as widely as
the world size allows."""
from __future__ import annotations


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_world(world: int, heads: int) -> str | None:
    """None if ``world`` ranks can split ``heads`` attention heads evenly, else why not."""
    if world < 1:
        return f"{world} devices: at least one is needed"
    if heads % world:
        usable = [d for d in divisors(heads) if d <= world]
        return (f"{world} devices do not divide the model's {heads} attention heads "
                f"(usable counts up to {world}: {', '.join(map(str, usable))})")
    return None


def guidance_groups(rows: int, world: int) -> int:
    """Groups for a batch of ``rows``: the fewest rows per rank (the slowest group's
    ceil(rows / groups) rows over world / groups ranks); on a tie the most groups (less all-to-all)."""
    return min(divisors(world), key=lambda g: (-(-rows // g) * g, -g))


def group_rows(rows: int, groups: int) -> list[list[int]]:
    """Rows of each group: contiguous, the first groups one more when they do not divide evenly."""
    base, extra = divmod(rows, groups)
    out, start = [], 0
    for g in range(groups):
        n = base + (g < extra)
        out.append(list(range(start, start + n)))
        start += n
    return out


def choose_world(choice: str, visible: int, heads: int) -> tuple[int, str]:
    """The loader's ``gpus`` setting ("auto" = every visible GPU, or a count) -> (GPUs to use, a note for
    the report; empty when it is exactly what was asked). Counts that cannot split the heads fall back."""
    if choice == "1":
        return 1, ""
    if visible < 2:
        return 1, f"gpus {choice}: {visible} GPU visible, running on one"
    if choice == "auto":
        count = max(d for d in divisors(heads) if d <= visible)
        if count == visible:
            return count, ""
        return count, f"gpus auto: {count} of {visible} visible GPUs ({check_world(visible, heads)})"
    count = int(choice)
    if count > visible:
        return 1, f"gpus {count}: only {visible} GPUs visible, running on one; choose auto or at most {visible}"
    why = check_world(count, heads)
    return (1, f"gpus {count}: {why}; running on one GPU") if why else (count, "")
