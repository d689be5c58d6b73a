/* Control requests of the migration layer: save, migrate, status, cancel. */
#ifndef FERRY_MIG_CTL_H
#define FERRY_MIG_CTL_H

#include "core/ctl.h"
#include "core/dirty_rate.h"
#include "migrate/mig_live.h"

struct mig_ctl {
	struct ctl_ext ext;       /* hand &ext to ctl_server_start */
	struct mig_job job;
	struct dirty_rate *rate;
	uint64_t sample_ms;
	bool final_seen;          /* a client read the finished migration's result */
};

/* Whether this VM was migrated away (and the result was read or not). */
bool mig_ctl_migrated(struct mig_ctl *c);
/* Whether a migration is under way (its result not final yet). */
bool mig_ctl_running(struct mig_ctl *c);

void mig_ctl_init(struct mig_ctl *c, struct dirty_rate *rate, uint64_t sample_ms);
/* Wait for a migration thread that may still be finishing. */
void mig_ctl_destroy(struct mig_ctl *c);
/* MigrationInfo of the job, for responses (valid until the next call). */
Ferry__Ctl__MigrationInfo *mig_ctl_info(struct mig_ctl *c);

#endif
