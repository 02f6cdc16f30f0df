"""
Benchmarks of twisted-natpmp: C{python -m benchmarks [--quick] [--json FILE]}.

Each figure is printed for a person and, with C{--json}, written as one
object per figure (name, value, unit; for a ratio, the two things compared).
Targets are printed beside the results and marked met or missed; a missed
target never fails the run.  C{--quick} uses the smallest sizes: it proves
that the benchmarks still work, and its numbers mean little.

Network rule: every packet goes to 127.0.0.0/8, or stays between network
namespaces that the benchmark creates and deletes itself.
"""
