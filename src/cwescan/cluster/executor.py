"""The driver of a cluster scan: a :class:`StageExecutor` that ships the file stage to Ray
tasks and the model stage's batches to Ray actors, and hands back exactly what the local
executor would, so the pipeline's merge and report code is shared.

What travels: to the tasks, the bytes of the files to scan (read here, so the cluster needs
no access to the scanned tree) and back their findings, suppressions and, when the model
stage follows, their text; to the actors, the text of the files whose units a model must
review, plus the static findings of those files; back, the model's findings. The result cache
is looked up here, before anything is shipped (``cwescan.scan.pipeline``).

Nothing is lost: a task whose worker dies is retried by Ray (``TASK_RETRIES``); a batch that
fails every try is split into single files, and a file that still fails is reported as
skipped ("worker-lost"). An actor that dies is restarted and its call retried; a batch whose
actor is gone for good is tried once more on another actor, else reported per file as a
detector error, as a local scan reports a model failure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cwescan import detectors as detector_registry
from cwescan.cluster.file_tasks import scan_files
from cwescan.cluster.model_actor import DetectorSpec, ModelWorker, UnitBatch
from cwescan.core.findings import Finding
from cwescan.core.units import Unit
from cwescan.detectors.base import Detector
from cwescan.scan.executor import BatchDone, ProgressHook, StageExecutor
from cwescan.scan.pipeline import FileResult, ScanOptions, scan_read
from cwescan.scan.walk import Candidate, Notice, ReadResult, read_bytes

BATCH_FILES = 32  # files per task at most: small enough to spread a 100-file repository
BATCH_BYTES = 2 * 1024 * 1024  # and at most this much source per task
IN_FLIGHT_PER_CPU = 2  # tasks queued per cluster CPU: keeps workers busy, bounds driver memory
CALLS_PER_ACTOR = 2  # batches queued per actor: the next one is there when one ends


class RayExecutor(StageExecutor):
    """Runs a scan's heavy stages on the Ray cluster this process is connected to
    (``cwescan.cluster.runtime.connect``). ``precision``, ``slm_model``, ``device`` and ``slm_partner`` are
    what the scan gives ``create_detectors``, so every actor builds the same detector as the
    driver (whose copy only serves the cache keys and is never loaded)."""

    def __init__(self, precision: str | None = None, slm_model: str | None = None,
                 device: str | None = None, workers: int | None = None,
                 slm_partner: str | None = None) -> None:
        self.precision, self.slm_model, self.device = precision, slm_model, device
        self.slm_partner = slm_partner
        # None: the whole cluster (a task per CPU, an actor per node or per GPU); n: at most n
        # file tasks at once and n actors per model (the benchmark compares 1 and 2)
        self.workers = workers
        self._actors: dict[str, list] = {}
        self.where: dict[str, list[dict]] = {}  # detector -> where each actor runs

    def describe(self) -> str:
        """'2 nodes, 2 CPUs, 0 GPUs'."""
        nodes = sum(1 for n in ray.nodes() if n["Alive"])
        res = ray.cluster_resources()
        return f"{nodes} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"

    # --- file stage -----------------------------------------------------------------------

    def run_files(self, candidates: Sequence[Candidate], fast: Sequence[Detector],
                  options: ScanOptions, keep_source: bool,
                  progress: ProgressHook | None) -> list[FileResult]:
        missing = [d.name for d in fast if d.name not in detector_registry.REGISTRY]
        if missing:
            raise ValueError(f"detectors {missing} are not registered: cluster workers build "
                             "detectors from the registry")
        targets = tuple(detector_registry.REGISTRY[d.name] for d in fast)
        args = (targets, options.max_file_size, options.file_timeout, keep_source)
        total = len(candidates)
        results: list[FileResult | None] = [None] * total
        done = 0
        cpus = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        in_flight_limit = self.workers or cpus * IN_FLIGHT_PER_CPU
        batch_files = max(1, min(BATCH_FILES, total // (cpus * 4) or 1))
        in_flight: dict = {}  # ref -> [(index, relpath, bytes)]

        def finish(index: int, result: FileResult) -> None:
            nonlocal done
            results[index] = result
            done += 1
            if progress:
                progress("files", done, total)

        def collect(block_until: int) -> None:
            while len(in_flight) > block_until:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                items = in_flight.pop(ready[0])
                for (index, _, _), result in zip(items, self._batch_results(ready[0], items, args)):
                    finish(index, result)

        batch: list[tuple[int, str, bytes]] = []
        size = 0
        for index, cand in enumerate(candidates):
            data = read_bytes(cand.abspath, cand.relpath, options.max_file_size)
            if isinstance(data, ReadResult):  # skipped before any work: same result as locally
                finish(index, scan_read(cand.relpath, data, (), options.file_timeout, False))
                continue
            batch.append((index, cand.relpath, data))
            size += len(data)
            if len(batch) >= batch_files or size >= BATCH_BYTES:
                in_flight[scan_files.remote([(r, d) for _, r, d in batch], *args)] = batch
                batch, size = [], 0
                collect(in_flight_limit - 1)
        if batch:
            in_flight[scan_files.remote([(r, d) for _, r, d in batch], *args)] = batch
        collect(0)
        return results  # type: ignore[return-value]  # every index was finished

    def _batch_results(self, ref, items: list[tuple[int, str, bytes]], args) -> list[FileResult]:
        """A finished task's results; when it failed every retry, each file alone, so that
        one file that kills its worker costs only itself."""
        try:
            return ray.get(ref)
        except RayError as batch_error:
            if len(items) == 1:
                return [_lost(items[0][1], batch_error)]
            singles = [scan_files.remote([(relpath, data)], *args) for _, relpath, data in items]
            out = []
            for (_, relpath, _), single in zip(items, singles):
                try:
                    out.extend(ray.get(single))
                except RayError as e:
                    out.append(_lost(relpath, e))
            return out

    # --- model stage ----------------------------------------------------------------------

    def _actors_for(self, name: str, verbose: bool, display: float = 0.0) -> list:
        if name in self._actors:
            return self._actors[name]
        spec = DetectorSpec(name, self.precision, self.slm_model, self.device, self.slm_partner, display)
        if self.device == "cuda":
            n = self.workers or int(ray.cluster_resources().get("GPU", 0))
            if n < 1:
                raise RuntimeError("--device cuda: the cluster has no GPU")
            actors = [ModelWorker.options(num_gpus=1, num_cpus=0).remote(spec, verbose) for _ in range(n)]
        else:
            nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU")]
            if self.workers:
                nodes = (nodes * self.workers)[:self.workers]
            # one per node, its torch using every CPU of the node. It reserves none: the file
            # stage is over when it computes, and a reservation would starve the file tasks of a
            # later scan while the actor waits. Pinned to its node (soft affinity was seen to put
            # both actors of a two-node cluster on one node); when that node is gone for good,
            # its batches go to the other actors (run_model).
            actors = [ModelWorker.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(spec, verbose, threads=int(node["Resources"]["CPU"])) for node in nodes]
        self._actors[name] = actors
        self.where[name] = ray.get([a.where.remote() for a in actors])
        return actors

    def load_models(self, names: Sequence[str], verbose: bool = False) -> None:
        """Start the actors of these model detectors and load their weights now (else the
        first batch does); the benchmark keeps loading out of its timed span."""
        for name in names:
            ray.get([a.load.remote() for a in self._actors_for(name, verbose)])

    def run_model(self, detector: Detector, batches: Sequence[Sequence[Unit]],
                  hints: dict[str, list[Finding]], verbose: bool,
                  batch_done: BatchDone) -> list[list[Finding] | Exception]:
        actors = list(self._actors_for(detector.name, verbose, detector.display))
        # built as they are dispatched, so the first actors start while later batches are packed
        payloads: dict[int, object] = {}
        answers: list[list[Finding] | Exception | None] = [None] * len(batches)
        queue = deque(range(len(batches)))
        tries = [0] * len(batches)
        in_flight: dict = {}  # ref -> (batch index, actor)
        load: dict[int, int] = {id(a): 0 for a in actors}

        def settle(i: int, answer) -> None:
            answers[i] = answer
            batch_done(len(batches[i]))

        while queue or in_flight:
            for actor in actors:
                while queue and load[id(actor)] < CALLS_PER_ACTOR:
                    i = queue.popleft()
                    tries[i] += 1
                    if i not in payloads:
                        payloads[i] = ray.put(UnitBatch.of(list(batches[i]), hints))
                    in_flight[actor.detect.remote(payloads[i])] = (i, actor)
                    load[id(actor)] += 1
            if not in_flight:  # every actor is gone: what is left fails
                for i in queue:
                    settle(i, RuntimeError("no model actor left in the cluster"))
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            i, actor = in_flight.pop(ready[0])
            load[id(actor)] -= 1
            try:
                settle(i, ray.get(ready[0]))
                payloads.pop(i, None)  # let the object store free it
            except RayTaskError as e:  # the detector itself raised: as a local scan reports it
                cause = e.as_instanceof_cause()
                settle(i, cause if isinstance(cause, Exception) else RuntimeError(str(e)))
            except RayActorError as e:  # the actor died past its restarts
                if actor in actors:
                    actors.remove(actor)
                if tries[i] < 2 and actors:
                    queue.appendleft(i)
                else:
                    settle(i, RuntimeError(f"model actor lost: {type(e).__name__}"))
        return answers  # type: ignore[return-value]  # every batch was settled

    def close(self) -> None:
        for actors in self._actors.values():
            for actor in actors:
                ray.kill(actor)
        self._actors.clear()


def _lost(relpath: str, error: BaseException) -> FileResult:
    return FileResult(relpath, None, scanned=False, notices=[Notice(
        relpath, "worker-lost",
        f"the worker scanning this file died on every try ({type(error).__name__}); file skipped")])
