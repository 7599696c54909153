"""The job manager: a finished job is found again after memory let go of it, never recomputed."""

from __future__ import annotations

from pathlib import Path

from server.jobs import JobManager


def test_a_finished_job_memory_forgot_is_served_from_the_store(tmp_path: Path) -> None:
    manager = JobManager(tmp_path / "jobs", max_jobs=1)  # memory keeps the newest 4 jobs
    runs: list[int] = []

    def work_for(n: int):  # type: ignore[no-untyped-def]
        def work(job) -> dict:
            runs.append(n)
            (job.directory / "image.txt").write_text(f"unit {n}")
            return {"unit": n}
        return work

    first = manager.submit("featviz", {"unit": 0}, work_for(0))
    assert manager.wait_idle(10) and first.status == "done"
    for n in range(1, 7):
        manager.submit("featviz", {"unit": n}, work_for(n))
        assert manager.wait_idle(10)
    assert first.id not in manager._jobs  # forgotten by memory
    again = manager.submit("featviz", {"unit": 0}, work_for(0))
    assert again.id == first.id and again.status == "done" and again.result == {"unit": 0}
    assert runs == list(range(7))  # not run a second time
    assert (again.directory / "image.txt").read_text() == "unit 0"
    assert manager.get(first.id).status == "done"
    # a job whose files are gone runs again
    for path in again.directory.iterdir():
        path.unlink()
    again.directory.rmdir()
    manager._jobs.pop(first.id)
    rerun = manager.submit("featviz", {"unit": 0}, work_for(0))
    assert manager.wait_idle(10) and rerun.status == "done" and runs[-1] == 0 and len(runs) == 8
    manager.shutdown()
