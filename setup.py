"""Maps the top-level folders onto the ``spendwatch`` namespace.

The repository keeps ``streams/``, ``detectors/``, ``sinks/`` and ``schemas/`` at the
top level so a newcomer finds them by name; installed, they are
``spendwatch.streams``, ``spendwatch.detectors`` and so on, so nothing generic such
as ``schemas`` lands at the top of site-packages.
"""

from setuptools import find_packages, setup

MAPPED_FOLDERS = ("streams", "detectors", "sinks", "schemas")

package_dir = {"spendwatch": "spendwatch"}
packages = ["spendwatch", *(f"spendwatch.{p}" for p in find_packages("spendwatch"))]
for folder in MAPPED_FOLDERS:
    package_dir[f"spendwatch.{folder}"] = folder
    packages.append(f"spendwatch.{folder}")
    for sub in find_packages(folder):
        packages.append(f"spendwatch.{folder}.{sub}")
        package_dir[f"spendwatch.{folder}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"spendwatch.schemas": ["*.json"], "spendwatch.sinks": ["**/*.sql"], "spendwatch": ["data/*"],
                  "spendwatch.traffic": ["*.yaml"]},
    include_package_data=True,
)
