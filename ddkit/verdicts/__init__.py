"""Statistics and verdict rules: intervals and tests, the smallest effects of interest, the claims'
rules, the evidence each claim is tested on, the official release's reference numbers.
Imports the wings below it.
"""
