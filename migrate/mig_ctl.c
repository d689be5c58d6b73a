/* The control-socket requests that belong to the migration layer. */
#include "migrate/mig_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrate/mig_snapshot.h"
#include "migrate/mig_state.h"

static __thread char mig_ctl_msg[MIG_ERR_LEN];
static __thread Ferry__Ctl__SaveResult mig_ctl_save;
static __thread char mig_ctl_path[4096];

static void mig_ctl_do_save(struct vm *vm, const Ferry__Ctl__Save *req,
			    Ferry__Ctl__Response *resp)
{
	struct mig_snapshot_result res;
	int ret;

	if (!req->path || !*req->path) {
		resp->error = -EINVAL;
		resp->message = "save: no file given";
		return;
	}
	ret = mig_snapshot_save(vm, req->path, req->verify, req->stop, &res, mig_ctl_msg);
	if (ret) {
		resp->error = ret;
		resp->message = mig_ctl_msg;
		return;
	}
	ferry__ctl__save_result__init(&mig_ctl_save);
	snprintf(mig_ctl_path, sizeof(mig_ctl_path), "%s", req->path);
	mig_ctl_save.path = mig_ctl_path;
	mig_ctl_save.bytes = res.bytes;
	mig_ctl_save.pages = res.pages;
	mig_ctl_save.zero_pages = res.zero_pages;
	mig_ctl_save.duration_ns = res.duration_ns;
	resp->save = &mig_ctl_save;
}

static bool mig_ctl_handle(void *opaque, struct vm *vm, const Ferry__Ctl__Request *req,
			   Ferry__Ctl__Response *resp)
{
	(void)opaque;
	switch (req->cmd_case) {
	case FERRY__CTL__REQUEST__CMD_SAVE:
		mig_ctl_do_save(vm, req->save, resp);
		return true;
	default:
		return false;
	}
}

const struct ctl_ext mig_ctl_ext = {
	.opaque = NULL,
	.handle = mig_ctl_handle,
};
