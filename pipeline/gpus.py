"""GPU accounting on Ray: every holder is counted by Ray, verl's workers included, and none waits
in a way that can fail.

Ray counts the ``GPU`` resource of every task and actor that asks for one and hands each a
disjoint set of ids (``CUDA_VISIBLE_DEVICES``). Our stages take GPUs in three ways:

* a stage task that uses its devices itself (sft: ``sft.num_processes``, analysis) asks for
  ``resources.<stage>.num_gpus``;
* sample, score and eval run their engines on actors of ``gpus_per_worker`` GPUs each
  (``pipeline/parallel.py``), whether there is one shard or many;
* ``rl=verl`` starts ``verl.trainer.main_ppo``, which joins the cluster and asks Ray for a
  placement group of ``n_gpus_per_node`` × ``nnodes`` bundles of one GPU each
  (``verl/single_controller/ray/base.py``, ``RayResourcePool.get_placement_groups``). Before
  that, ``ResourcePoolManager._check_resource_available`` *fails* unless that many GPUs are free
  at that moment. The rl task cannot hold the GPUs itself (verl would then see none free).

**The gate.** Every node of a local cluster (and every node of a joined one, started with
``--resources``, see :func:`start_command`) carries a logical resource :data:`LEASE` equal to its
GPU count. Every holder of ours asks for ``LEASE`` together with its GPUs, in the same request:
a task or actor with ``g`` GPUs asks for ``g`` leases. An rl stage whose child takes ``e`` GPUs
outside its own request (:func:`external_gpus`) asks for 0 GPUs and ``e`` leases: it waits in
Ray's queue like any other stage and, once scheduled, holds the leases while verl runs. Why no
GPU is ever used twice and verl's start check cannot fail for a busy cluster, on one node with
``N`` GPUs (``N`` leases):

1. our holders' GPUs ≤ our holders' leases (each asks for as many leases as GPUs, both released
   when it ends);
2. all leases held ≤ ``N`` (Ray's accounting), so our holders' GPUs ≤ ``N`` − gate leases;
3. verl runs only inside a gate, and asks for as many GPUs as its gate holds leases, so when a
   gate's verl starts, free GPUs ≥ ``N`` − our holders' GPUs − other verl runs' GPUs ≥ its own
   gate's leases = what it asks for.

4. Ray's scheduler (each node's raylet) frees and grants resources at once, but the view that
   verl's check reads (``available_resources_per_node``, reported to Ray's GCS) lags behind. So a
   gate waits until that view shows its GPUs free before its stage starts verl, and gives its
   leases back only once the view shows them free again after verl exited (verl's driver exits
   before Ray has removed its placement groups): :func:`wait_free`. On one node whose gates take
   every GPU (the paper's setups: 8 of 8) "``e`` GPUs free" means exactly that no one else holds
   them; with smaller gates it can be met early, and the rl stage's own start retries
   (``rl.start_retries``) cover the rest.

GPUs themselves are always handed out by Ray, so two holders never share an id whatever the
order; the leases only make verl's fail-fast check pass. Across several nodes the same sums hold
cluster-wide (verl's check counts GPUs on all nodes); verl's placement group then waits for a
node with enough free GPUs, it does not fail. A gate must fit on one node: ``rl.nnodes`` > 1
would need leases on several nodes at once and is refused before any work (:func:`check_fits`).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Ray resource that partitions each node's GPUs between our holders and verl runs (their gates)
LEASE = "gpu_lease"


def external_gpus(stage: str, cfg: Mapping[str, Any]) -> float:
    """GPUs a stage's child processes take from the cluster outside its own Ray request:
    ``rl=verl``'s workers (``rl.n_gpus_per_node`` × ``rl.nnodes``); 0 for every other stage."""
    rl = cfg.get("rl") or {}
    if stage == "rl" and rl.get("engine") == "verl":
        return float(rl.get("n_gpus_per_node", 1)) * float(rl.get("nnodes", 1))
    return 0.0


def holds_gpus(resources: Mapping[str, Any]) -> float:
    return float(resources.get("num_gpus", 0) or 0)


def lease_of(resources: Mapping[str, Any], external: float) -> float:
    """Leases a stage task asks for: its own GPUs, or those its child takes (a gate)."""
    return max(holds_gpus(resources), float(external))


def ray_options(num_gpus: float, lease: float, leased_cluster: bool) -> dict[str, Any]:
    """``num_gpus`` and ``resources`` for ``.options()`` of a task or actor."""
    opts: dict[str, Any] = {"num_gpus": num_gpus}
    if lease > 0 and leased_cluster:
        opts["resources"] = {LEASE: lease}
    return opts


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def leased_cluster() -> bool:
    """True if the running Ray cluster carries leases."""
    import ray

    return ray.cluster_resources().get(LEASE, 0) > 0


def start_command(gpus: int | str = "N") -> str:
    return (f"ray start --head --num-gpus={gpus} --resources='{{\"{LEASE}\": {gpus}}}' "
            f"(and --address=HEAD:6379 instead of --head on the other nodes)")


def check_leases(needs_gate: bool) -> None:
    """Refuse a cluster whose GPU nodes lack leases equal to their GPUs when a stage of the run
    needs a gate: verl's start check could then fail, or an rl task wait for leases forever."""
    if not needs_gate:
        return
    bad = [(r.get("GPU", 0), r.get(LEASE, 0)) for r in _alive_nodes()
           if r.get("GPU", 0) != r.get(LEASE, 0)]
    if bad:
        gpus, leases = bad[0]
        raise RuntimeError(
            f"a node of the Ray cluster has {gpus:g} GPU(s) but {leases:g} '{LEASE}' resource(s); "
            f"rl=verl needs every node to carry as many '{LEASE}' as GPUs, so that its rl stage "
            f"can reserve GPUs for verl's workers. Start each node with: {start_command()}")


def check_fits(requests: Mapping[str, Mapping[str, float]]) -> None:
    """Refuse a request no node of the cluster could ever hold (Ray would queue it forever).

    ``requests``: node id -> ``{"CPU": c, "GPU": g, LEASE: l}``."""
    nodes = _alive_nodes()
    for nid, req in requests.items():
        if any(all(have.get(k, 0) >= v for k, v in req.items() if v > 0) for have in nodes):
            continue
        largest = {k: max((h.get(k, 0) for h in nodes), default=0) for k in req}
        want = ", ".join(f"{v:g} {k}" for k, v in req.items() if v > 0)
        have = ", ".join(f"{v:g} {k}" for k, v in largest.items())
        raise RuntimeError(f"{nid} asks for {want} on one node, but no node of the Ray cluster has "
                           f"that much (largest per resource: {have}); lower resources.* / "
                           f"rl.n_gpus_per_node, or add a larger node")


def local_gpu_count() -> int:
    """GPUs this machine shows the run (``CUDA_VISIBLE_DEVICES`` respected), for a local cluster."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return 0
    if visible is None and not Path("/proc/driver/nvidia/gpus").exists():
        return 0  # no NVIDIA driver: skip importing torch
    import torch

    return torch.cuda.device_count()


def wait_free(gpus: float, timeout_s: float = 600.0, poll_s: float = 0.25) -> bool:
    """In a gate, before starting verl and after it exited: wait until Ray's cluster view shows
    ``gpus`` GPUs free, at most ``timeout_s``; False (and a warning) if it never did."""
    import ray

    deadline = time.time() + timeout_s
    while ray.available_resources().get("GPU", 0) < gpus:
        if time.time() > deadline:
            log.warning("Ray does not show %g GPU(s) free after %.0f s; going on", gpus, timeout_s)
            return False
        time.sleep(poll_s)
    return True
