"""mammography: reproducible breast-density research on screening mammograms.

Kept import-light on purpose: ``mammography --help`` must not pay for torch.
"""

import time as _time

#: When this process imported the package. A long-lived process (a Ray worker, which Ray
#: reuses from task to task) keeps the code it imported then; a source file changed
#: after this moment means it runs other code than the files say
#: (``data/cluster/nodes.loaded_code_problem``).
IMPORTED_AT_NS = _time.time_ns()
