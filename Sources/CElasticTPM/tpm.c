#include "elastic_tpm.h"

#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

struct CElasticTPM {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
};

uint32_t CElasticTPM_open(const char *tcti, CElasticTPM **out) {
    CElasticTPM *t = calloc(1, sizeof *t);
    if (!t) return TSS2_ESYS_RC_MEMORY;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
    if (rc == TSS2_RC_SUCCESS) rc = Esys_Initialize(&t->esys, t->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        CElasticTPM_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void CElasticTPM_close(CElasticTPM *t) {
    if (!t) return;
    if (t->esys) Esys_Finalize(&t->esys);
    if (t->tcti) Tss2_TctiLdr_Finalize(&t->tcti);
    free(t);
}

/* The ESYS handle of `index`, with its public area checked to be a counter. */
static TSS2_RC handle_of(CElasticTPM *t, uint32_t index, ESYS_TR *handle) {
    TSS2_RC rc = Esys_TR_FromTPMPublic(t->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, handle);
    if (rc != TSS2_RC_SUCCESS) return (rc & 0xfff) == CELASTIC_TPM_RC_HANDLE ? CELASTIC_TPM_RC_HANDLE : rc;
    TPM2B_NV_PUBLIC *pub = NULL;
    rc = Esys_NV_ReadPublic(t->esys, *handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(t->esys, handle);
        return rc;
    }
    TPM2_NT type = (pub->nvPublic.attributes & TPMA_NV_TPM2_NT_MASK) >> TPMA_NV_TPM2_NT_SHIFT;
    int authrw = (pub->nvPublic.attributes & (TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE)) ==
                 (TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE);
    Esys_Free(pub);
    if (type != TPM2_NT_COUNTER || !authrw) {
        Esys_TR_Close(t->esys, handle);
        return CELASTIC_TPM_RC_NOT_COUNTER;
    }
    return TSS2_RC_SUCCESS;
}

uint32_t CElasticTPM_counter_exists(CElasticTPM *t, uint32_t index) {
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = handle_of(t, index, &h);
    if (rc == TSS2_RC_SUCCESS) Esys_TR_Close(t->esys, &h);
    return rc;
}

uint32_t CElasticTPM_counter_define(CElasticTPM *t, uint32_t index) {
    TPM2B_AUTH auth = {.size = 0};
    TPM2B_NV_PUBLIC pub = {
        .size = 0,
        .nvPublic = {
            .nvIndex = index,
            .nameAlg = TPM2_ALG_SHA256,
            .attributes = (TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) | TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE |
                          TPMA_NV_NO_DA,
            .authPolicy = {.size = 0},
            .dataSize = 8,
        }};
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = Esys_NV_DefineSpace(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth,
                                     &pub, &h);
    if (rc != TSS2_RC_SUCCESS) return (rc & 0xfff) == CELASTIC_TPM_RC_NV_DEFINED ? CELASTIC_TPM_RC_NV_DEFINED : rc;
    Esys_TR_Close(t->esys, &h);
    return 0;
}

uint32_t CElasticTPM_counter_increment(CElasticTPM *t, uint32_t index) {
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = handle_of(t, index, &h);
    if (rc != TSS2_RC_SUCCESS) return rc;
    rc = Esys_NV_Increment(t->esys, h, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
    Esys_TR_Close(t->esys, &h);
    return rc;
}

uint32_t CElasticTPM_counter_read(CElasticTPM *t, uint32_t index, uint64_t *value) {
    ESYS_TR h = ESYS_TR_NONE;
    TSS2_RC rc = handle_of(t, index, &h);
    if (rc != TSS2_RC_SUCCESS) return rc;
    TPM2B_MAX_NV_BUFFER *data = NULL;
    rc = Esys_NV_Read(t->esys, h, h, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &data);
    Esys_TR_Close(t->esys, &h);
    if (rc != TSS2_RC_SUCCESS) return (rc & 0xfff) == CELASTIC_TPM_RC_NV_UNINITIALIZED ? CELASTIC_TPM_RC_NV_UNINITIALIZED : rc;
    if (data->size != 8) {
        Esys_Free(data);
        return CELASTIC_TPM_RC_NOT_COUNTER;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | data->buffer[i];
    Esys_Free(data);
    *value = v;
    return 0;
}

const char *CElasticTPM_error(uint32_t rc) {
    switch (rc) {
    case CELASTIC_TPM_RC_HANDLE: return "no such NV index";
    case CELASTIC_TPM_RC_NV_UNINITIALIZED: return "the NV counter was never incremented";
    case CELASTIC_TPM_RC_NV_DEFINED: return "the NV index is defined already";
    case CELASTIC_TPM_RC_NOT_COUNTER: return "the NV index is not an NV counter readable and writable with its own auth";
    default: return Tss2_RC_Decode(rc);
    }
}
