#ifndef ELASTIC_TPM_H
#define ELASTIC_TPM_H
#include <stdint.h>

/* A TPM 2.0 NV counter through the tpm2-tss ESAPI (Debian's libtss2-esys and libtss2-tctildr).
   Every function returns a TSS2_RC (0 is success); CElasticTPM_error names one. */

/* TSS2_RC values the caller tells apart (format-one codes with the TPM layer). */
#define CELASTIC_TPM_RC_HANDLE 0x18b           /* TPM2_RC_HANDLE | TPM2_RC_H | TPM2_RC_1: no such index */
#define CELASTIC_TPM_RC_NV_UNINITIALIZED 0x14a /* the counter was never incremented */
#define CELASTIC_TPM_RC_NV_DEFINED 0x14c       /* the index exists already */
#define CELASTIC_TPM_RC_NOT_COUNTER 0xe1a5e001 /* ours: the index is not an NV counter */

typedef struct CElasticTPM CElasticTPM;

/* Connects through the TCTI named by `tcti` ("device:/dev/tpmrm0", "swtpm:host=...,port=...";
   NULL: tctildr's default). */
uint32_t CElasticTPM_open(const char *tcti, CElasticTPM **out);
void CElasticTPM_close(CElasticTPM *tpm);

/* Whether `index` is defined: 0 yes, CELASTIC_TPM_RC_HANDLE no, another code on failure; an
   index that is defined but not an NV counter gives CELASTIC_TPM_RC_NOT_COUNTER. */
uint32_t CElasticTPM_counter_exists(CElasticTPM *tpm, uint32_t index);
/* Defines `index` as an 8-byte NV counter, read and written with its own (empty) auth value. */
uint32_t CElasticTPM_counter_define(CElasticTPM *tpm, uint32_t index);
uint32_t CElasticTPM_counter_increment(CElasticTPM *tpm, uint32_t index);
uint32_t CElasticTPM_counter_read(CElasticTPM *tpm, uint32_t index, uint64_t *value);

/* A text for a TSS2_RC (static storage). */
const char *CElasticTPM_error(uint32_t rc);
#endif
