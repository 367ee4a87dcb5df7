"""Running a job spec on a cluster someone else operates.

- `paths`: which places in a spec a cluster node would look up on its own disk;
- `submit`: `audiobatch submit`, a spec sent through the Ray Jobs API;
- `k8s`: `audiobatch render k8s`, KubeRay manifests (RayJob, RayCronJob or a CronJob).

Ray and KubeRay schedule, retry and stop jobs: nothing here re-implements them.
"""
