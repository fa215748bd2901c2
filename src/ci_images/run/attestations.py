"""push-images' attestations: a provenance on every digest an entry publishes (its index and each platform manifest,
built or mirrored) and an SBOM per platform manifest (and on the index, one per platform), signed like the images.

Called from the signing step (``run/execute.py``): ``start`` right after an entry is signed hands its attestations to
a pool of its own, so syft's scans run while the next entries build and smoke-test; ``finish`` waits for them and
puts what was attested into each entry's Result (a failure fails the entry with exit 9, its tags already moved, as a
signing failure does). Only what this run published is attested: an entry the plan skipped, or only retagged, keeps
the attestations of the run that made its digest, and costs nothing here (no request at all).

Provenance inputs come from what the run already holds: the plan's upstream digest, upstream's per-platform digests
(the manifest the build or the copy read, memoised in the Context: no second upstream GET), the Dockerfile and
context on disk, the repository and commit of the catalog, this run's id and times. SBOMs are syft's, read from the
target, one scan per distinct layer list (``sign.sbom``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images import proc
from ci_images.errors import CiImagesError, CommandError, SigningError
from ci_images.log import log
from ci_images.plan.builds import ASSEMBLED
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.run.build import upstream_platforms
from ci_images.run.context import Context
from ci_images.run.result import Result
from ci_images.run.settings import RunSettings

if TYPE_CHECKING:
    from ci_images.sign.attach import ImageDigests
    from ci_images.sign.attest import Attester, AttestOutcome
    from ci_images.sign.sbom import SbomGenerator
    from ci_images.sign.signer import Signer

# Results whose digest this run published: they get attestations.
PUBLISHED_NOW = frozenset({"built", "mirrored"})


def repository_root(folder: Path) -> Path:
    """The git work tree ``folder`` is in (paths in a provenance are relative to it), else ``folder`` itself."""
    try:
        done = proc.run(["git", "-C", folder, "rev-parse", "--show-toplevel"], check=False, timeout=10)
    except CommandError:
        return folder
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else folder


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass(frozen=True)
class RunFacts:
    """What every provenance of this run says alike: where the catalog is, which commit, who built, when."""

    root: Path
    catalog: str  # the catalog's path in its repository
    checkout: Any  # provenance.Checkout
    builder_id: str
    invocation_id: str
    started_on: str


class AttestationStep:
    """Attestations of the entries a run publishes, made beside the pipeline (see the module)."""

    def __init__(self, ctx: Context, settings: RunSettings, attester: Attester, sboms: SbomGenerator) -> None:
        from ci_images.sign import provenance

        self.ctx = ctx
        self.attester = attester
        self.sboms = sboms
        catalog = settings.catalog_file or Path("images.yaml")
        root = repository_root(catalog.parent)
        self.facts = RunFacts(
            root=root,
            catalog=_relative(catalog, root),
            checkout=provenance.Checkout(settings.source_url, settings.revision),
            builder_id=provenance.builder_id(ctx.env),
            invocation_id=provenance.invocation_id(ctx.env),
            started_on=settings.started_on or provenance.timestamp(),
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="attest")
        self._futures: dict[str, Future[list[AttestOutcome]]] = {}
        self._lock = threading.Lock()

    def start(self, decision: Decision, result: Result) -> None:
        """Hand the attestations of what ``result`` published to the pool (nothing for what it did not publish)."""
        if result.action not in PUBLISHED_NOW or not result.digest or result.dry_run:
            return
        future = self._pool.submit(self._attest, decision, result)
        with self._lock:
            self._futures[result.key] = future

    def finish(self, results: Sequence[Result]) -> list[Result]:
        """Wait for every entry's attestations; each Result gets its outcomes, or fails (exit 9) with the error."""
        if self.ctx.cancel.is_set():
            for future in self._futures.values():
                future.cancel()
        finished: list[Result] = []
        for result in results:
            pending = self._futures.get(result.key)
            finished.append(result if pending is None else self._collect(result, pending))
        self._pool.shutdown(wait=True)
        self._summary(finished)
        return finished

    def _collect(self, result: Result, future: Future[list[AttestOutcome]]) -> Result:
        try:
            outcomes = future.result()
        except CiImagesError as exc:
            log.error(f"{result.key}: {exc.render()}", title=f"{result.key}: attestations failed")
            return replace(
                result,
                action="failed",
                reason="attestations failed: " + exc.message.splitlines()[0][:300],
                error=exc.render(),
                exit_code=SigningError.exit_code,
            )
        except CancelledError:  # after an interrupt
            return replace(result, reason=f"{result.reason}; not attested (interrupted)")
        return replace(result, attestations=tuple(outcomes))

    def _summary(self, results: Sequence[Result]) -> None:
        outcomes = [o for r in results for o in r.attestations]
        if not outcomes and not self._futures:
            return
        written = sum(1 for o in outcomes if o.written)
        log.info(
            f"attestations: {written} written, {len(outcomes) - written} there already "
            f"({self.attester.mode}: {self.attester.signer}); SBOM scans: {self.sboms.scans} "
            f"(syft, {self.sboms.seconds:.1f} s)"
        )

    # ---- one entry, on the pool ------------------------------------------------------------------------------

    def _attest(self, decision: Decision, result: Result) -> list[AttestOutcome]:
        from ci_images.sign.attach import attest_image, read_image, wanted

        self.ctx.check_cancelled(f"attesting {decision.entry.key}")
        entry = decision.entry
        assert result.digest is not None
        client = self.ctx.target_pool.get(entry.target.api_host)
        started = time.monotonic()
        try:
            image = read_image(client, entry.target, result.digest)
        except CiImagesError as exc:
            raise SigningError(f"attesting {entry.key}: {exc.message}", fix=exc.fix) from exc
        wants = wanted(
            image,
            provenance_for=lambda covered: self._provenance(decision, result, image, covered),
            sbom_for=lambda digest: self.sboms.spdx(
                client, entry.target, digest, layers=image.layers.get(digest, ())
            ),
            same_files=self.sboms.same_files,
        )
        outcomes = attest_image(client, entry.target, wants, self.attester)
        written = sum(1 for o in outcomes if o.written)
        log.info(
            f"{entry.key}: {len(outcomes)} attestations ({written} written now) in {time.monotonic() - started:.1f} s"
        )
        return outcomes

    def _provenance(
        self, decision: Decision, result: Result, image: ImageDigests, covered: Sequence[str]
    ) -> Mapping[str, Any]:
        from ci_images.sign import provenance

        entry = decision.entry
        assert decision.source_digest is not None
        bases = self._bases(decision, result, image)
        upstream = provenance.Upstream(decision.source_digest, {p: bases[p] for p in covered if p in bases})
        parameters = provenance.EntryParameters(
            catalog=self.facts.catalog,
            image=entry.image,
            variant=entry.variant,
            version=entry.version,
            source=str(entry.source),
            platforms=entry.platforms,
            tags=entry.tag_refs,
            build_args=entry.build_args,
        )
        run = provenance.Run(
            self.facts.builder_id, self.facts.invocation_id, self.facts.started_on, provenance.timestamp()
        )
        if entry.mode == "mirror":
            return provenance.mirror_predicate(parameters, upstream, self.facts.checkout, run)
        build_type = provenance.ASSEMBLE_TYPE if result.built == ASSEMBLED else provenance.BUILD_TYPE
        return provenance.build_predicate(
            parameters,
            upstream,
            self._recipe(entry, decision),
            self.facts.checkout,
            run,
            build_type=build_type,
        )

    def _bases(self, decision: Decision, result: Result, image: ImageDigests) -> Mapping[str, str]:
        """platform -> the upstream manifest it was built from (or is a copy of)."""
        if decision.entry.mode == "mirror":
            # A copy keeps upstream's manifests byte for byte: the target's are upstream's.
            return dict(image.platforms)
        assert decision.source_digest is not None
        return upstream_platforms(self.ctx, decision.entry, decision.source_digest)

    def _recipe(self, entry: Entry, decision: Decision) -> Any:
        from ci_images.sign import provenance

        assert entry.context is not None and entry.dockerfile is not None
        context, dockerfile = entry.context, entry.dockerfile
        dirhash = self.ctx.once(
            ("context-dirhash", str(context)), lambda: provenance.context_dirhash(context)
        )
        return provenance.Recipe(
            dockerfile=_relative(dockerfile, self.facts.root),
            dockerfile_digest=provenance.file_digest(dockerfile),
            context=_relative(context, self.facts.root),
            context_dirhash=dirhash,
            recipe=decision.recipe,
        )


def attestation_step(ctx: Context, settings: RunSettings, signer: Signer | None) -> AttestationStep | None:
    """The step, when this run signs and attests (a signer, and attestations not turned off)."""
    if signer is None or not settings.attest or not settings.publish:
        return None
    from ci_images.sign.attach import attester_for, sbom_generator

    return AttestationStep(
        ctx, settings, attester_for(signer), sbom_generator(ctx.env, parallel=settings.jobs)
    )
