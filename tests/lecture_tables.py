"""The lecture's printed numbers, copied from its slides, with the rule for comparing them.

The lecture prints every score cut (truncated towards zero) to two decimals: 7/9 =
0.777... is printed 0.77 and 5/9 = 0.555... is printed 0.55, not 0.78 and 0.56. So a
computed value v matches a printed value p when ``trunc(v * 100) == p * 100`` (after
rounding v to 4 decimals, which removes float32 noise such as 0.99999994 for 9/9).
Comparisons are on whole hundredths, exactly, with no tolerance.
"""

from __future__ import annotations

import numpy as np


def table(text: str) -> np.ndarray:
    """A printed table as integer hundredths ("0.77" -> 77, "0" -> 0)."""
    rows = [line.split() for line in text.strip().splitlines()]
    return np.array([[round(float(v) * 100) for v in row] for row in rows], dtype=np.int64)


def cut_to_hundredths(values) -> np.ndarray:
    """The lecture's printing rule: round away float noise, then truncate to 2 decimals."""
    v = np.asarray(values, dtype=np.float64)
    return np.trunc(np.round(v * 10_000) / 100).astype(np.int64)


def pixels(text: str) -> np.ndarray:
    rows = [line.split() for line in text.strip().splitlines()]
    return np.array(rows, dtype=np.float32)


# "Filtering: The math behind the match" -- the 9x9 X.
X_IMAGE = pixels("""
-1 -1 -1 -1 -1 -1 -1 -1 -1
-1  1 -1 -1 -1 -1 -1  1 -1
-1 -1  1 -1 -1 -1  1 -1 -1
-1 -1 -1  1 -1  1 -1 -1 -1
-1 -1 -1 -1  1 -1 -1 -1 -1
-1 -1 -1  1 -1  1 -1 -1 -1
-1 -1  1 -1 -1 -1  1 -1 -1
-1  1 -1 -1 -1 -1 -1  1 -1
-1 -1 -1 -1 -1 -1 -1 -1 -1
""")

# "Features match pieces of the image": backslash, x, slash.
BACKSLASH = pixels("""
 1 -1 -1
-1  1 -1
-1 -1  1
""")
X_FEATURE = pixels("""
 1 -1  1
-1  1 -1
 1 -1  1
""")
SLASH = pixels("""
-1 -1  1
-1  1 -1
 1 -1 -1
""")
FEATURES = (BACKSLASH, X_FEATURE, SLASH)

# "Convolution: Trying every possible match" -- 9x9 (*) 3x3 = 7x7, one map per feature.
RESPONSE_BACKSLASH = table("""
 0.77 -0.11  0.11  0.33  0.55 -0.11  0.33
-0.11  1.00 -0.11  0.33 -0.11  0.11 -0.11
 0.11 -0.11  1.00 -0.33  0.11 -0.11  0.55
 0.33  0.33 -0.33  0.55 -0.33  0.33  0.33
 0.55 -0.11  0.11 -0.33  1.00 -0.11  0.11
-0.11  0.11 -0.11  0.33 -0.11  1.00 -0.11
 0.33 -0.11  0.55  0.33  0.11 -0.11  0.77
""")
RESPONSE_X = table("""
 0.33 -0.55  0.11 -0.11  0.11 -0.55  0.33
-0.55  0.55 -0.55  0.33 -0.55  0.55 -0.55
 0.11 -0.55  0.55 -0.77  0.55 -0.55  0.11
-0.11  0.33 -0.77  1.00 -0.77  0.33 -0.11
 0.11 -0.55  0.55 -0.77  0.55 -0.55  0.11
-0.55  0.55 -0.55  0.33 -0.55  0.55 -0.55
 0.33 -0.55  0.11 -0.11  0.11 -0.55  0.33
""")
RESPONSE_SLASH = table("""
 0.33 -0.11  0.55  0.33  0.11 -0.11  0.77
-0.11  0.11 -0.11  0.33 -0.11  1.00 -0.11
 0.55 -0.11  0.11 -0.33  1.00 -0.11  0.11
 0.33  0.33 -0.33  0.55 -0.33  0.33  0.33
 0.11 -0.11  1.00 -0.33  0.11 -0.11  0.55
-0.11  1.00 -0.11  0.33 -0.11  0.11 -0.11
 0.77 -0.11  0.11  0.33  0.55 -0.11  0.33
""")
RESPONSES = (RESPONSE_BACKSLASH, RESPONSE_X, RESPONSE_SLASH)

# "Convolution layer: one image becomes a stack of filtered images" prints the slash map
# again with one cell changed: row 1, column 6 reads 0.11. The slash map above (and the
# slash map on the "Convolution: Trying every possible match" slide) has -0.11 there.
RESPONSE_SLASH_AS_PRINTED_IN_CONV_LAYER_SLIDE = table("""
 0.33 -0.11  0.55  0.33  0.11 -0.11  0.77
-0.11  0.11 -0.11  0.33 -0.11  1.00  0.11
 0.55 -0.11  0.11 -0.33  1.00 -0.11  0.11
 0.33  0.33 -0.33  0.55 -0.33  0.33  0.33
 0.11 -0.11  1.00 -0.33  0.11 -0.11  0.55
-0.11  1.00 -0.11  0.33 -0.11  0.11 -0.11
 0.77 -0.11  0.11  0.33  0.55 -0.11  0.33
""")

# "Max Pooling, Stride is 2" prints the backslash map with row 0, column 5 as 0.11.
RESPONSE_BACKSLASH_AS_PRINTED_IN_STRIDE_SLIDE = table("""
 0.77 -0.11  0.11  0.33  0.55  0.11  0.33
-0.11  1.00 -0.11  0.33 -0.11  0.11 -0.11
 0.11 -0.11  1.00 -0.33  0.11 -0.11  0.55
 0.33  0.33 -0.33  0.55 -0.33  0.33  0.33
 0.55 -0.11  0.11 -0.33  1.00 -0.11  0.11
-0.11  0.11 -0.11  0.33 -0.11  1.00 -0.11
 0.33 -0.11  0.55  0.33  0.11 -0.11  0.77
""")

# "ReLU layer: a stack of images becomes a stack of images with no negative values."
RELU_BACKSLASH = table("""
0.77 0    0.11 0.33 0.55 0    0.33
0    1.00 0    0.33 0    0.11 0
0.11 0    1.00 0    0.11 0    0.55
0.33 0.33 0    0.55 0    0.33 0.33
0.55 0    0.11 0    1.00 0    0.11
0    0.11 0    0.33 0    1.00 0
0.33 0    0.55 0.33 0.11 0    0.77
""")
RELU_X = table("""
0.33 0    0.11 0    0.11 0    0.33
0    0.55 0    0.33 0    0.55 0
0.11 0    0.55 0    0.55 0    0.11
0    0.33 0    1.00 0    0.33 0
0.11 0    0.55 0    0.55 0    0.11
0    0.55 0    0.33 0    0.55 0
0.33 0    0.11 0    0.11 0    0.33
""")
RELU_SLASH = table("""
0.33 0    0.55 0.33 0.11 0    0.77
0    0.11 0    0.33 0    1.00 0
0.55 0    0.11 0    1.00 0    0.11
0.33 0.33 0    0.55 0    0.33 0.33
0.11 0    1.00 0    0.11 0    0.55
0    1.00 0    0.33 0    0.11 0
0.77 0    0.11 0.33 0.55 0    0.33
""")
RELUS = (RELU_BACKSLASH, RELU_X, RELU_SLASH)

# "Max Pooling ... 7x7 -> 4x4, ceiling of 7/2" and "Pooling layer".
POOLED_BACKSLASH = table("""
1.00 0.33 0.55 0.33
0.33 1.00 0.33 0.55
0.55 0.33 1.00 0.11
0.33 0.55 0.11 0.77
""")
POOLED_X = table("""
0.55 0.33 0.55 0.33
0.33 1.00 0.55 0.11
0.55 0.55 0.55 0.11
0.33 0.11 0.11 0.33
""")
POOLED_SLASH = table("""
0.33 0.55 1.00 0.77
0.55 0.55 1.00 0.33
1.00 1.00 0.11 0.55
0.77 0.33 0.55 0.33
""")
POOLED = (POOLED_BACKSLASH, POOLED_X, POOLED_SLASH)

# "Deep stacking: layers can be repeated several (or many) times."
DEEP_BACKSLASH = table("""
1.00 0.55
0.55 1.00
""")
DEEP_X = table("""
1.00 0.55
0.55 0.55
""")
DEEP_SLASH = table("""
0.55 1.00
1.00 0.55
""")
DEEP = (DEEP_BACKSLASH, DEEP_X, DEEP_SLASH)
