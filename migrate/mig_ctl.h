/* Control requests of the migration layer (save; migrate to come). */
#ifndef FERRY_MIG_CTL_H
#define FERRY_MIG_CTL_H

#include "core/ctl.h"

extern const struct ctl_ext mig_ctl_ext;

#endif
