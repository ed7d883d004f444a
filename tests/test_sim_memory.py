"""No unbounded buffers: a long run with many vCPUs keeps a flat, small footprint."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    from pvspin.sim.config import HostConfig
    from pvspin.sim.scenario import GuestSpec, Run, Scenario
    from pvspin.sim.workload import Distribution, WorkloadConfig

    # light locktorture (1 ms between acquisitions) so 10 simulated seconds stay affordable
    workload = WorkloadConfig(locks=4, hold=Distribution(mean_ns=500), delay=Distribution(mean_ns=1_000_000))
    scenario = Scenario(host=HostConfig(pcpus=32, hypervisor="kvm"),
                        guests=[GuestSpec(vcpus=64, lock="pvqspinlock", workload=workload)],
                        duration_ms=10_000, seed=1)
    result = Run(scenario).run(chunks=10)
    # VmHWM: this process's own peak.  ru_maxrss would not do: Linux carries it over from
    # the forking parent across exec, so a big pytest worker would count against us.
    with open("/proc/self/status") as status:
        peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"peak_mb": peak_mb, "acquisitions": result["guests"][0]["acquisitions"],
                      "seconds": result["host"]["simulated_seconds"]}))
    """
)


@pytest.mark.slow
def test_ten_simulated_seconds_of_64_vcpus_stay_under_500_mb():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["seconds"] == pytest.approx(10.0)
    assert report["acquisitions"] > 200_000  # it really ran: ~320k acquisitions here
    assert report["peak_mb"] < 500, report
